//! Credentials: API tokens made and revoked, users deactivated, passwords changed, and the
//! control events that end the streams each makes wrong.

use herald_app::{ErrorKind, TokenSpec, UserRole, accounts::Credentials, model::NewToken};

use crate::support::{PASSWORD, TestApp, assert_kind, next_event};

fn spec(name: &str) -> TokenSpec {
    TokenSpec {
        name: name.to_owned(),
        can_notify: false,
        ttl: None,
    }
}

#[tokio::test]
async fn a_token_works_until_it_is_revoked_and_its_streams_are_told() {
    let t = TestApp::start().await;
    let alice = t.user("alice", UserRole::Member).await;
    let bob = t.user("bob", UserRole::Member).await;
    let accounts = t.app.accounts();
    let made = accounts
        .add_token(&alice.user.id, spec("ci"))
        .await
        .unwrap();
    assert!(made.token.starts_with("hrld_"), "{}", made.token);
    let listed = accounts.list_tokens(&alice.user.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, made.info.id);

    let actor = accounts
        .authenticate(Credentials::Token(&made.token))
        .await
        .unwrap();
    assert_eq!(actor.user.id, alice.user.id);
    assert_eq!(actor.token.as_deref(), Some(made.info.id.as_str()));
    assert!(actor.session.is_none());

    // Someone else's token is not theirs to revoke, nor even to know of.
    assert_kind(
        t.app.revoke_token(&bob, &made.info.id).await,
        ErrorKind::NotFound,
    );
    let mut control = t.follow(&["herald:control".to_owned()]).await;
    t.app.revoke_token(&alice, &made.info.id).await.unwrap();
    let mut pending = String::new();
    let event = next_event(&mut control, &mut pending).await;
    assert_eq!(event.event_type, "tokens:revoked");
    assert_eq!(event.data["user"]["id"], alice.user.id.as_str());

    assert_kind(
        accounts.authenticate(Credentials::Token(&made.token)).await,
        ErrorKind::Unauthenticated,
    );
    assert!(
        accounts
            .list_tokens(&alice.user.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_kind(
        t.app.revoke_token(&alice, &made.info.id).await,
        ErrorKind::NotFound,
    );
    t.stop().await;
}

#[tokio::test]
async fn a_token_needs_a_name_and_an_owner() {
    let t = TestApp::start().await;
    let alice = t.user("alice", UserRole::Member).await;
    let error = assert_kind(
        t.app.accounts().add_token(&alice.user.id, spec("")).await,
        ErrorKind::Invalid,
    );
    assert_eq!(error.field.as_deref(), Some("name"));
    assert_kind(
        t.app
            .accounts()
            .create_token("nobody@example.com", spec("x"))
            .await,
        ErrorKind::NotFound,
    );
    t.stop().await;
}

#[tokio::test]
async fn a_deactivated_user_is_shut_out_until_reactivated() {
    let t = TestApp::start().await;
    let admin = t.user("root", UserRole::Admin).await;
    let alice = t.user("alice", UserRole::Member).await;
    let token = t
        .app
        .accounts()
        .add_token(&alice.user.id, spec("script"))
        .await
        .unwrap();

    // Only admins deactivate, and not themselves.
    assert_kind(
        t.app.set_active(&alice, &admin.user.id, false).await,
        ErrorKind::Forbidden,
    );
    assert_kind(
        t.app.set_active(&admin, &admin.user.id, false).await,
        ErrorKind::Conflict,
    );

    let mut control = t.follow(&["herald:control".to_owned()]).await;
    let account = t
        .app
        .set_active(&admin, &alice.user.id, false)
        .await
        .unwrap();
    assert!(!account.active);
    let mut pending = String::new();
    assert_eq!(
        next_event(&mut control, &mut pending).await.event_type,
        "users:deactivated"
    );

    // Every credential fails, and a login fails like a wrong password.
    let accounts = t.app.accounts();
    assert_kind(
        accounts
            .authenticate(Credentials::Token(&token.token))
            .await,
        ErrorKind::Unauthenticated,
    );
    let refused = assert_kind(
        t.session("alice@example.com", PASSWORD).await,
        ErrorKind::Unauthenticated,
    );
    let wrong = assert_kind(
        t.session("alice@example.com", "not the password").await,
        ErrorKind::Unauthenticated,
    );
    assert_eq!(refused.message, wrong.message);

    t.app
        .set_active(&admin, &alice.user.id, true)
        .await
        .unwrap();
    t.session("alice@example.com", PASSWORD).await.unwrap();
    accounts
        .authenticate(Credentials::Token(&token.token))
        .await
        .unwrap();
    t.stop().await;
}

#[tokio::test]
async fn a_password_change_checks_the_old_one_and_ends_other_sessions() {
    let t = TestApp::start().await;
    t.user("alice", UserRole::Member).await;
    let accounts = t.app.accounts();
    let signed_in = || accounts.login("alice@example.com", PASSWORD.to_owned());
    let (_, this) = signed_in().await.unwrap();
    let (_, other) = signed_in().await.unwrap();
    let alice = accounts
        .authenticate(Credentials::Session(&this))
        .await
        .unwrap();

    assert_kind(
        t.app
            .change_password(&alice, "wrong".into(), "a new long password".into())
            .await,
        ErrorKind::Forbidden,
    );
    let error = assert_kind(
        t.app
            .change_password(&alice, PASSWORD.into(), "short".into())
            .await,
        ErrorKind::Invalid,
    );
    assert_eq!(error.field.as_deref(), Some("the new password"));

    let mut theirs = t.follow(&[format!("herald:user/{}", alice.user.id)]).await;
    t.app
        .change_password(&alice, PASSWORD.into(), "a new long password".into())
        .await
        .unwrap();
    // The change ends the user's streams.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        use futures::StreamExt as _;
        while theirs.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the user's stream ends");

    // The other session is gone, this one stays, and only the new password signs in.
    assert_kind(
        accounts.authenticate(Credentials::Session(&other)).await,
        ErrorKind::Unauthenticated,
    );
    accounts
        .authenticate(Credentials::Session(&this))
        .await
        .unwrap();
    assert_kind(
        t.session("alice@example.com", PASSWORD).await,
        ErrorKind::Unauthenticated,
    );
    t.session("alice@example.com", "a new long password")
        .await
        .unwrap();
    t.stop().await;
}

/// An authentication is reused for a second, so a session ended behind this process's back
/// (by another node whose update has not arrived yet) still reads here for that long. But
/// what makes or replaces a credential reads the session afresh: a stolen session ended
/// elsewhere cannot make a token that outlives it, nor change the password.
#[tokio::test]
async fn a_session_ended_elsewhere_cannot_make_credentials_while_it_is_reused() {
    let t = TestApp::start().await;
    t.user("alice", UserRole::Member).await;
    let accounts = t.app.accounts();
    let (_, secret) = accounts
        .login("alice@example.com", PASSWORD.to_owned())
        .await
        .unwrap();
    let alice = accounts
        .authenticate(Credentials::Session(&secret))
        .await
        .unwrap();
    let new_token = || NewToken {
        name: "ci".to_owned(),
        ttl: None,
        notify: false,
    };
    t.app.create_token(&alice, new_token()).await.unwrap();

    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(alice.session.as_deref().unwrap())
        .execute(&t.pool)
        .await
        .unwrap();
    // Reused: nothing told this process.
    let reused = accounts
        .authenticate(Credentials::Session(&secret))
        .await
        .unwrap();
    assert_kind(
        t.app.create_token(&reused, new_token()).await,
        ErrorKind::Unauthenticated,
    );
    assert_kind(
        t.app
            .change_password(&reused, PASSWORD.to_owned(), format!("{PASSWORD}!"))
            .await,
        ErrorKind::Unauthenticated,
    );
    assert_eq!(
        accounts.list_tokens(&reused.user.id).await.unwrap().len(),
        1
    );
}
