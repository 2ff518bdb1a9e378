//! Workspaces, members and collections: who may do what, and which topic each change's
//! event reaches.

use herald_app::{
    ErrorKind, UserRole,
    model::{MemberRole, NewMember, NewTodo, Note, NoteBody, Todo, TodoPatch},
};

use crate::support::{TestApp, assert_kind, next_event};

#[tokio::test]
async fn owners_manage_members_and_members_only_their_collections() {
    let t = TestApp::start().await;
    let owner = t.user("owner", UserRole::Member).await;
    let member = t.user("member", UserRole::Member).await;
    let ws = t.app.create_workspace(&owner, "Team".into()).await.unwrap();
    let ws = ws.workspace.id;
    assert_eq!(
        t.app.workspace(&owner, &ws).await.unwrap().data.role,
        Some(MemberRole::Owner)
    );

    // Not a member yet: the workspace does not exist for them.
    assert_kind(t.app.workspace(&member, &ws).await, ErrorKind::NotFound);
    let added = t
        .app
        .add_member(
            &owner,
            &ws,
            NewMember {
                user_id: member.user.id.clone(),
                role: MemberRole::Member,
            },
        )
        .await
        .unwrap();
    assert_eq!(added.role, MemberRole::Member);
    assert_kind(
        t.app
            .add_member(
                &owner,
                &ws,
                NewMember {
                    user_id: member.user.id.clone(),
                    role: MemberRole::Member,
                },
            )
            .await,
        ErrorKind::Conflict,
    );

    // A member reads and writes the collections, but does not manage the workspace.
    let todo: Todo = t
        .app
        .create::<Todo>(
            &member,
            &ws,
            NewTodo {
                title: "Write the tests".into(),
                done: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(todo.created_by, member.user.id);
    let error = assert_kind(
        t.app.rename_workspace(&member, &ws, "Mine".into()).await,
        ErrorKind::Forbidden,
    );
    assert!(error.message.contains("owners"), "{error:?}");
    assert_kind(
        t.app.remove_member(&member, &ws, &owner.user.id).await,
        ErrorKind::Forbidden,
    );
    // The last owner stays, even by their own hand.
    assert_kind(
        t.app.remove_member(&owner, &ws, &owner.user.id).await,
        ErrorKind::Conflict,
    );
    // A member may leave; then the workspace is gone for them.
    t.app
        .remove_member(&member, &ws, &member.user.id)
        .await
        .unwrap();
    assert_kind(
        t.app.get::<Todo>(&member, &ws, &todo.id).await,
        ErrorKind::NotFound,
    );
    assert_eq!(t.app.members(&owner, &ws).await.unwrap().data.len(), 1);
    t.stop().await;
}

#[tokio::test]
async fn a_member_cannot_touch_another_workspace_but_an_admin_can() {
    let t = TestApp::start().await;
    let alice = t.user("alice", UserRole::Member).await;
    let bob = t.user("bob", UserRole::Member).await;
    let admin = t.user("root", UserRole::Admin).await;
    let theirs = t
        .app
        .create_workspace(&alice, "Alice's".into())
        .await
        .unwrap();
    let ws = theirs.workspace.id;
    let todo: Todo = t
        .app
        .create::<Todo>(
            &alice,
            &ws,
            NewTodo {
                title: "Private plans".into(),
                done: false,
            },
        )
        .await
        .unwrap();

    // To Bob, Alice's workspace and everything in it do not exist: the same 404 as for
    // a workspace that does not exist at all.
    let missing = "0190a2b4-0000-7000-8000-000000000000";
    for target in [ws.as_str(), missing] {
        assert_kind(t.app.workspace(&bob, target).await, ErrorKind::NotFound);
    }
    assert_kind(
        t.app.list::<Todo>(&bob, &ws, None, 50).await,
        ErrorKind::NotFound,
    );
    assert_kind(
        t.app.get::<Todo>(&bob, &ws, &todo.id).await,
        ErrorKind::NotFound,
    );
    assert_kind(
        t.app
            .update::<Todo>(
                &bob,
                &ws,
                &todo.id,
                TodoPatch {
                    title: None,
                    done: Some(true),
                },
            )
            .await,
        ErrorKind::NotFound,
    );
    assert_kind(
        t.app.delete::<Todo>(&bob, &ws, &todo.id).await,
        ErrorKind::NotFound,
    );
    assert_kind(t.app.delete_workspace(&bob, &ws).await, ErrorKind::NotFound);
    assert!(
        t.app
            .workspaces(&bob)
            .await
            .unwrap()
            .data
            .iter()
            .all(|w| w.workspace.id != ws)
    );
    // Nothing Bob tried changed anything.
    assert!(
        !t.app
            .get::<Todo>(&alice, &ws, &todo.id)
            .await
            .unwrap()
            .data
            .done
    );

    // An admin sees every workspace, without being a member.
    let seen = t.app.workspace(&admin, &ws).await.unwrap();
    assert_eq!(seen.data.role, None);
    assert_eq!(
        t.app
            .list::<Todo>(&admin, &ws, None, 50)
            .await
            .unwrap()
            .data
            .items
            .len(),
        1
    );
    t.stop().await;
}

#[tokio::test]
async fn a_change_emits_its_event_on_its_topics_only() {
    let t = TestApp::start().await;
    let owner = t.user("owner", UserRole::Member).await;
    let ws = t.app.create_workspace(&owner, "Team".into()).await.unwrap();
    let ws = ws.workspace.id;
    let mut shared = t.follow(&[format!("herald:ws/{ws}")]).await;
    let mut notes = t.follow(&[format!("herald:ws/{ws}/notes")]).await;
    let mut todos = t.follow(&[format!("herald:ws/{ws}/todos")]).await;

    let note: Note = t
        .app
        .create::<Note>(
            &owner,
            &ws,
            NoteBody {
                content: Some("Mine alone".into()),
            },
        )
        .await
        .unwrap();
    let todo: Todo = t
        .app
        .create::<Todo>(
            &owner,
            &ws,
            NewTodo {
                title: "Shared".into(),
                done: false,
            },
        )
        .await
        .unwrap();

    let (mut a, mut b, mut c) = (String::new(), String::new(), String::new());
    let event = next_event(&mut notes, &mut a).await;
    assert_eq!(event.event_type, "notes:created");
    assert_eq!(event.data["action"], "created");
    assert_eq!(event.data["resourceType"], "notes");
    assert_eq!(event.data["workspaceId"], ws.as_str());
    assert_eq!(event.data["data"]["id"], note.id.as_str());
    assert_eq!(event.data["user"]["id"], owner.user.id.as_str());

    let event = next_event(&mut todos, &mut b).await;
    assert_eq!(event.event_type, "todos:created");
    assert_eq!(event.data["data"]["title"], "Shared");

    // A note is private to its author: the workspace's shared topic gets the todo first,
    // since the note's event, sequenced before it, never went there.
    let event = next_event(&mut shared, &mut c).await;
    assert_eq!(event.event_type, "todos:created", "{event:?}");
    assert_eq!(event.data["data"]["id"], todo.id.as_str());

    // An update and a delete say so in their type and action.
    t.app
        .update::<Todo>(
            &owner,
            &ws,
            &todo.id,
            TodoPatch {
                title: None,
                done: Some(true),
            },
        )
        .await
        .unwrap();
    t.app.delete::<Todo>(&owner, &ws, &todo.id).await.unwrap();
    let event = next_event(&mut todos, &mut b).await;
    assert_eq!(
        (event.event_type.as_str(), &event.data["action"]),
        ("todos:updated", &serde_json::json!("updated"))
    );
    assert_eq!(event.data["data"]["done"], true);
    let event = next_event(&mut todos, &mut b).await;
    assert_eq!(event.event_type, "todos:deleted");
    t.stop().await;
}

#[tokio::test]
async fn a_membership_change_reaches_the_user_it_concerns() {
    let t = TestApp::start().await;
    let owner = t.user("owner", UserRole::Member).await;
    let newcomer = t.user("newcomer", UserRole::Member).await;
    let ws = t.app.create_workspace(&owner, "Team".into()).await.unwrap();
    let ws = ws.workspace.id;
    let mut theirs = t
        .follow(&[format!("herald:user/{}", newcomer.user.id)])
        .await;
    t.app
        .add_member(
            &owner,
            &ws,
            NewMember {
                user_id: newcomer.user.id.clone(),
                role: MemberRole::Member,
            },
        )
        .await
        .unwrap();
    let mut pending = String::new();
    let event = next_event(&mut theirs, &mut pending).await;
    assert_eq!(event.event_type, "members:added");
    assert_eq!(event.data["data"]["userId"], newcomer.user.id.as_str());
    t.stop().await;
}

#[tokio::test]
async fn invalid_fields_are_named() {
    let t = TestApp::start().await;
    let owner = t.user("owner", UserRole::Member).await;
    let error = assert_kind(
        t.app.create_workspace(&owner, "  ".into()).await,
        ErrorKind::Invalid,
    );
    assert_eq!(error.field.as_deref(), Some("name"));
    assert_eq!(error.message, "name must not be empty");
    let error = assert_kind(
        t.app.workspace(&owner, "not-a-uuid").await,
        ErrorKind::NotFound,
    );
    assert_eq!(error.message, "no such workspace");
    t.stop().await;
}
