//! The app's REST API (`docs/app-api.md`) over HTTP against a real server: logins and
//! sessions, users, workspaces and their members, the three collections with pagination,
//! the policy (owner, member, non-member, admin, note author), bad input that gets
//! `{error, message}` and changes nothing, and the `herald user` CLI whose tokens act as
//! their user.

use std::process::Output;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    ADMIN_EMAIL, ADMIN_PASSWORD, AppClient, AppWorld, PASSWORD, SESSION_COOKIE, TestServer,
    assert_utc_timestamp, id_of, keys, run_herald_with, text,
};

/// The keys of a `User`.
const USER_KEYS: [&str; 4] = ["email", "id", "name", "role"];

/// The keys of a `Workspace` answered to a user.
const WORKSPACE_KEYS: [&str; 6] = ["createdAt", "createdBy", "id", "name", "role", "updatedAt"];

/// The keys of a `Member`.
const MEMBER_KEYS: [&str; 6] = ["addedAt", "email", "name", "role", "userId", "workspaceId"];

/// `value` without its `role`, as events carry a workspace.
fn without_role(mut value: Value) -> Value {
    value
        .as_object_mut()
        .expect("a workspace object")
        .remove("role");
    value
}

/// The ids of `items`, in order.
fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(id_of).collect()
}

/// A fresh UUID that names nothing.
fn nothing() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn logins_sessions_and_users() {
    let server = TestServer::app().await;
    let anonymous = AppClient::anonymous(&server);

    // Without a session, or with one that does not exist.
    anonymous
        .get("/api/me")
        .await
        .expect_error(401, "unauthorized");
    anonymous
        .get("/api/users")
        .await
        .expect_error(401, "unauthorized");
    let forged = AppClient::with_cookie(&server, &format!("{SESSION_COOKIE}=not-a-session"));
    forged
        .get("/api/me")
        .await
        .expect_error(401, "unauthorized");
    let forged = AppClient::with_bearer(&server, "hrld_not-a-token");
    forged
        .get("/api/me")
        .await
        .expect_error(401, "unauthorized");

    // The admin of the first start logs in and gets a session cookie.
    let reply = anonymous
        .post(
            "/api/login",
            &json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        )
        .await;
    let set_cookie = reply.set_session_cookie();
    let cookie = reply.session_cookie();
    let admin_user = reply.expect(200);
    assert_eq!(keys(&admin_user), USER_KEYS, "{admin_user}");
    assert_eq!(admin_user["email"], ADMIN_EMAIL);
    assert_eq!(admin_user["role"], "admin");
    let attributes: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|attribute| attribute.trim().to_ascii_lowercase())
        .collect();
    for attribute in ["httponly", "samesite=lax", "path=/"] {
        assert!(
            attributes.iter().any(|a| a == attribute),
            "no {attribute} in {set_cookie}"
        );
    }
    // Plain HTTP: a `Secure` cookie would never be sent back.
    assert!(
        !attributes.iter().any(|a| a == "secure"),
        "Secure over plain HTTP: {set_cookie}"
    );
    let session = cookie
        .strip_prefix(&format!("{SESSION_COOKIE}="))
        .expect("the session cookie");
    assert!(session.len() >= 16, "a guessable session id: {cookie}");
    let admin = AppClient::with_cookie(&server, &cookie);
    assert_eq!(admin.get("/api/me").await.expect(200), admin_user);

    // Bad logins: 401, the same answer whether or not the email exists.
    let wrong_password = anonymous
        .post(
            "/api/login",
            &json!({"email": ADMIN_EMAIL, "password": "wrong-password"}),
        )
        .await
        .expect_error(401, "unauthorized");
    let unknown_email = anonymous
        .post(
            "/api/login",
            &json!({"email": "nobody@example.com", "password": ADMIN_PASSWORD}),
        )
        .await
        .expect_error(401, "unauthorized");
    assert_eq!(
        wrong_password, unknown_email,
        "a failed login does not tell whether the email exists"
    );
    anonymous
        .post("/api/login", &json!({"email": ADMIN_EMAIL}))
        .await
        .expect_error(400, "bad_request");

    // Admins create users; the answer never shows the password.
    let alice_user = admin
        .create_user("alice@example.com", "Alice", "member")
        .await;
    assert_eq!(
        alice_user,
        json!({"id": alice_user["id"], "email": "alice@example.com", "name": "Alice", "role": "member"})
    );
    let duplicate = json!({"email": "alice@example.com", "name": "Alice 2", "password": PASSWORD, "role": "member"});
    admin
        .post("/api/users", &duplicate)
        .await
        .expect_error(409, "conflict");
    let alice = AppClient::login(&server, "alice@example.com", PASSWORD).await;
    assert_eq!(alice.user, alice_user);
    assert_eq!(alice.get("/api/me").await.expect(200), alice_user);
    let eve =
        json!({"email": "eve@example.com", "name": "Eve", "password": PASSWORD, "role": "admin"});
    alice
        .post("/api/users", &eve)
        .await
        .expect_error(403, "forbidden");

    // Bad users.
    let user = |email: &str, name: &str, password: &str, role: &str| json!({"email": email, "name": name, "password": password, "role": role});
    let long_name = "n".repeat(101);
    let long_password = "p".repeat(257);
    let long_email = format!("{}@example.com", "e".repeat(243));
    for body in [
        user("no-at-sign", "N", PASSWORD, "member"),
        user("a@", "N", PASSWORD, "member"),
        user(&long_email, "N", PASSWORD, "member"),
        user("n@example.com", "", PASSWORD, "member"),
        user("n@example.com", &long_name, PASSWORD, "member"),
        user("n@example.com", "N", "seven77", "member"),
        user("n@example.com", "N", &long_password, "member"),
        user("n@example.com", "N", PASSWORD, "owner"),
        json!({"email": "n@example.com", "name": "N", "password": PASSWORD}),
        json!({"email": "n@example.com", "name": "N", "password": PASSWORD, "role": "member", "admin": true}),
        json!(["n@example.com"]),
    ] {
        admin
            .post("/api/users", &body)
            .await
            .expect_error(400, "bad_request");
    }
    // The limits themselves are fine.
    let edge = admin
        .post(
            "/api/users",
            &user("e@x", &"n".repeat(100), "eight888", "member"),
        )
        .await
        .expect(201);
    assert_eq!(keys(&edge), USER_KEYS);
    AppClient::login(&server, "e@x", "eight888").await;

    // Every signed-in user lists every user, with whether the account is active.
    let listed = alice.items("/api/users").await;
    let mut emails: Vec<String> = listed.iter().map(|u| text(u, "email")).collect();
    emails.sort_unstable();
    assert_eq!(emails, [ADMIN_EMAIL, "alice@example.com", "e@x"]);
    let active = |user: &Value| {
        let mut user = user.clone();
        user["active"] = true.into();
        user
    };
    assert!(listed.contains(&active(&alice_user)), "{listed:?}");
    assert!(listed.contains(&active(&admin_user)), "{listed:?}");
    assert_eq!(admin.items("/api/users").await, listed);

    // Logout ends that session and no other.
    let second = AppClient::login(&server, "alice@example.com", PASSWORD).await;
    assert_ne!(
        second.cookie(),
        alice.cookie(),
        "each login is a new session"
    );
    let reply = alice.call(Method::POST, "/api/logout", None).await;
    let cleared = reply.set_session_cookie().to_ascii_lowercase();
    reply.expect(204);
    assert!(
        cleared.contains("max-age=0") || cleared.contains("expires="),
        "the logout does not clear the cookie: {cleared}"
    );
    alice.get("/api/me").await.expect_error(401, "unauthorized");
    alice
        .post("/api/workspaces", &json!({"name": "after logout"}))
        .await
        .expect_error(401, "unauthorized");
    assert_eq!(second.get("/api/me").await.expect(200), alice_user);
    assert!(
        second.items("/api/workspaces").await.is_empty(),
        "the workspace was created after the logout"
    );
}

#[tokio::test]
async fn workspaces_and_members_follow_the_rights() {
    let world = AppWorld::start().await;
    let AppWorld {
        admin,
        alice,
        bob,
        carol,
        ws,
        ..
    } = &world;
    let members = world.ws_path("members");

    // The workspace, as each one sees it.
    let as_alice = alice.get(&world.ws_path("")).await.expect(200);
    assert_eq!(keys(&as_alice), WORKSPACE_KEYS, "{as_alice}");
    assert_eq!(as_alice["id"], ws.as_str());
    assert_eq!(as_alice["name"], "Team");
    assert_eq!(as_alice["role"], "owner");
    assert_eq!(as_alice["createdBy"], alice.id());
    assert_utc_timestamp(&as_alice["createdAt"]);
    assert_utc_timestamp(&as_alice["updatedAt"]);
    let as_bob = bob.get(&world.ws_path("")).await.expect(200);
    assert_eq!(as_bob["role"], "member");
    assert_eq!(without_role(as_bob.clone()), without_role(as_alice.clone()));
    let as_admin = admin.get(&world.ws_path("")).await.expect(200);
    assert_eq!(as_admin["role"], Value::Null, "the admin is not a member");
    assert_eq!(without_role(as_admin), without_role(as_alice.clone()));

    // Lists: mine, with my role; admins: all.
    assert_eq!(alice.items("/api/workspaces").await, vec![as_alice.clone()]);
    assert_eq!(bob.items("/api/workspaces").await, [as_bob]);
    assert_eq!(
        ids(&carol.items("/api/workspaces").await),
        vec![world.carol_ws.clone()]
    );
    let all = admin.items("/api/workspaces").await;
    assert_eq!(all.len(), 3, "{all:?}");
    let first_start: Vec<&Value> = all.iter().filter(|w| w["name"] == "My workspace").collect();
    assert_eq!(first_start.len(), 1, "the first start's workspace: {all:?}");
    assert_eq!(first_start[0]["role"], "owner");
    assert_eq!(first_start[0]["createdBy"], admin.id());
    let team = all.iter().find(|w| w["id"] == ws.as_str()).expect("Team");
    assert_eq!(team["role"], Value::Null);

    // A non-member gets 404 for everything under the workspace.
    let todo = alice.create(ws, "todos", json!({"title": "t"})).await;
    let note = alice.create(ws, "notes", json!({"content": "n"})).await;
    let general = id_of(&alice.items(&world.ws_path("channels")).await[0]);
    let mut requests = vec![
        (Method::GET, world.ws_path(""), None),
        (
            Method::PATCH,
            world.ws_path(""),
            Some(json!({"name": "Mine"})),
        ),
        (Method::DELETE, world.ws_path(""), None),
        (Method::GET, members.clone(), None),
        (
            Method::POST,
            members.clone(),
            Some(json!({"userId": carol.id(), "role": "owner"})),
        ),
        (Method::DELETE, format!("{members}/{}", alice.id()), None),
        (Method::DELETE, format!("{members}/{}", bob.id()), None),
        (Method::GET, world.ws_path("events"), None),
        (
            Method::POST,
            world.ws_path("broadcast"),
            Some(json!({"data": "hi"})),
        ),
    ];
    for (collection, id, body) in [
        ("todos", id_of(&todo), json!({"title": "mine"})),
        ("channels", general, json!({"name": "mine"})),
        ("notes", id_of(&note), json!({"content": "mine"})),
    ] {
        let list = world.ws_path(collection);
        let one = format!("{list}/{id}");
        requests.extend([
            (Method::GET, list.clone(), None),
            (Method::POST, list, Some(body.clone())),
            (Method::GET, one.clone(), None),
            (Method::PATCH, one.clone(), Some(body)),
            (Method::DELETE, one, None),
        ]);
    }
    let before = (
        alice.items(&members).await,
        alice.items(&world.ws_path("todos")).await,
        alice.items(&world.ws_path("channels")).await,
        alice.items(&world.ws_path("notes")).await,
    );
    for (method, path, body) in &requests {
        carol
            .call(method.clone(), path, body.as_ref())
            .await
            .expect_error(404, "not_found");
    }
    assert_eq!(
        alice.get(&world.ws_path("")).await.expect(200),
        as_alice,
        "unchanged"
    );
    let after = (
        alice.items(&members).await,
        alice.items(&world.ws_path("todos")).await,
        alice.items(&world.ws_path("channels")).await,
        alice.items(&world.ws_path("notes")).await,
    );
    assert_eq!(after, before, "a non-member changed something");

    // A member reads, but does not manage.
    bob.patch(&world.ws_path(""), &json!({"name": "Bob's"}))
        .await
        .expect_error(403, "forbidden");
    bob.delete(&world.ws_path(""))
        .await
        .expect_error(403, "forbidden");
    bob.post(&members, &json!({"userId": carol.id(), "role": "member"}))
        .await
        .expect_error(403, "forbidden");
    bob.delete(&format!("{members}/{}", alice.id()))
        .await
        .expect_error(403, "forbidden");
    assert_eq!(
        alice.get(&world.ws_path("")).await.expect(200),
        as_alice,
        "unchanged"
    );

    // The members.
    let listed = bob.items(&members).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    for member in &listed {
        assert_eq!(keys(member), MEMBER_KEYS, "{member}");
        assert_eq!(member["workspaceId"], ws.as_str());
        assert_utc_timestamp(&member["addedAt"]);
    }
    let find = |items: &[Value], user: &AppClient| -> Value {
        items
            .iter()
            .find(|m| m["userId"] == user.id())
            .unwrap_or_else(|| panic!("{} is not in {items:?}", user.user["name"]))
            .clone()
    };
    let alice_member = find(&listed, alice);
    assert_eq!(alice_member["role"], "owner");
    assert_eq!(alice_member["name"], "Alice");
    assert_eq!(alice_member["email"], "alice@example.com");
    let bob_member = find(&listed, bob);
    assert_eq!(bob_member["role"], "member");
    assert_eq!(bob_member["name"], "Bob");

    // Adding and removing: conflicts and bad input.
    alice
        .post(&members, &json!({"userId": bob.id(), "role": "owner"}))
        .await
        .expect_error(409, "conflict");
    for body in [
        json!({"userId": carol.id(), "role": "admin"}),
        json!({"userId": "carol", "role": "member"}),
        json!({"userId": carol.id()}),
        json!({"userId": carol.id(), "role": "member", "name": "Carol"}),
    ] {
        alice
            .post(&members, &body)
            .await
            .expect_error(400, "bad_request");
    }
    alice
        .post(&members, &json!({"userId": nothing(), "role": "member"}))
        .await
        .expect_error(404, "not_found");
    alice
        .delete(&format!("{members}/{}", carol.id()))
        .await
        .expect_error(404, "not_found");
    for who in [alice, admin] {
        who.delete(&format!("{members}/{}", alice.id()))
            .await
            .expect_error(409, "conflict");
    }
    assert_eq!(bob.items(&members).await, listed, "unchanged");

    // Carol joins, then leaves by herself.
    let carol_member = alice.add_member(ws, &carol.id(), "member").await;
    assert_eq!(keys(&carol_member), MEMBER_KEYS);
    assert_eq!(carol_member["workspaceId"], ws.as_str());
    assert_eq!(carol_member["userId"], carol.id());
    assert_eq!(carol_member["name"], "Carol");
    assert_eq!(carol_member["email"], "carol@example.com");
    assert_eq!(carol_member["role"], "member");
    assert_eq!(find(&bob.items(&members).await, carol), carol_member);
    assert_eq!(
        carol.get(&world.ws_path("")).await.expect(200)["role"],
        "member"
    );
    carol
        .delete(&format!("{members}/{}", carol.id()))
        .await
        .expect(204);
    carol
        .get(&world.ws_path(""))
        .await
        .expect_error(404, "not_found");
    assert_eq!(bob.items(&members).await, listed);

    // A second owner (added by an admin who is no member) lets the first one leave.
    let carol_owner = admin.add_member(ws, &carol.id(), "owner").await;
    assert_eq!(carol_owner["role"], "owner");
    alice
        .delete(&format!("{members}/{}", alice.id()))
        .await
        .expect(204);
    alice
        .get(&world.ws_path(""))
        .await
        .expect_error(404, "not_found");
    assert!(alice.items("/api/workspaces").await.is_empty());

    // The new owner renames; the member sees it.
    let renamed = carol
        .patch(&world.ws_path(""), &json!({"name": "Renamed"}))
        .await
        .expect(200);
    assert_eq!(renamed["name"], "Renamed");
    assert_eq!(renamed["role"], "owner");
    assert_eq!(renamed["id"], as_alice["id"]);
    assert_eq!(renamed["createdAt"], as_alice["createdAt"]);
    assert_eq!(renamed["createdBy"], alice.id());
    assert_eq!(
        bob.get(&world.ws_path("")).await.expect(200)["name"],
        "Renamed"
    );
    let long_name = "w".repeat(101);
    for body in [
        json!({"name": ""}),
        json!({"name": long_name}),
        json!({}),
        json!({"name": "x", "colour": "red"}),
        json!({"name": 7}),
    ] {
        carol
            .patch(&world.ws_path(""), &body)
            .await
            .expect_error(400, "bad_request");
        carol
            .post("/api/workspaces", &body)
            .await
            .expect_error(400, "bad_request");
    }
    let edge = "w".repeat(100);
    carol
        .patch(&world.ws_path(""), &json!({"name": edge}))
        .await
        .expect(200);

    // A new workspace: its creator owns it, with a `general` channel; owners delete it.
    let bobs = bob.create_workspace("Bob's").await;
    assert_eq!(keys(&bobs), WORKSPACE_KEYS);
    assert_eq!(bobs["role"], "owner");
    assert_eq!(bobs["createdBy"], bob.id());
    let bobs_path = format!("/api/workspaces/{}", id_of(&bobs));
    let channels = bob.items(&format!("{bobs_path}/channels")).await;
    assert_eq!(channels.len(), 1, "{channels:?}");
    assert_eq!(channels[0]["name"], "general");
    assert_eq!(channels[0]["isDefault"], true);
    let bob_list = bob.items("/api/workspaces").await;
    assert_eq!(bob_list.len(), 2);
    assert!(bob_list.contains(&bobs));
    bob.delete(&bobs_path).await.expect(204);
    bob.get(&bobs_path).await.expect_error(404, "not_found");
    assert_eq!(ids(&bob.items("/api/workspaces").await), vec![ws.clone()]);

    // An admin deletes any workspace; then it is gone for everyone.
    admin.delete(&world.ws_path("")).await.expect(204);
    for who in [admin, bob, carol] {
        who.get(&world.ws_path(""))
            .await
            .expect_error(404, "not_found");
        who.get(&world.ws_path("todos"))
            .await
            .expect_error(404, "not_found");
    }
    assert!(bob.items("/api/workspaces").await.is_empty());
}

#[tokio::test]
async fn collections_crud_and_pagination() {
    let world = AppWorld::start().await;
    let AppWorld {
        admin,
        alice,
        bob,
        carol,
        ws,
        ..
    } = &world;

    // Todos: created oldest first, `done` false unless given.
    let todos = world.ws_path("todos");
    let mut created = Vec::new();
    for i in 1..=5 {
        created.push(
            alice
                .create(ws, "todos", json!({"title": format!("todo {i}")}))
                .await,
        );
    }
    let first = created[0].clone();
    assert_eq!(
        keys(&first),
        [
            "createdAt",
            "createdBy",
            "done",
            "id",
            "title",
            "updatedAt",
            "workspaceId"
        ]
    );
    assert_eq!(first["workspaceId"], ws.as_str());
    assert_eq!(first["title"], "todo 1");
    assert_eq!(first["done"], false);
    assert_eq!(first["createdBy"], alice.id());
    assert_utc_timestamp(&first["createdAt"]);
    assert_utc_timestamp(&first["updatedAt"]);
    let done = bob
        .create(ws, "todos", json!({"title": "already done", "done": true}))
        .await;
    assert_eq!(done["done"], true);
    assert_eq!(done["createdBy"], bob.id());
    created.push(done);
    let first_path = format!("{todos}/{}", id_of(&first));
    assert_eq!(bob.get(&first_path).await.expect(200), first);
    assert_eq!(
        alice.get(&todos).await.expect(200),
        json!({"items": created, "nextCursor": null})
    );

    // Pages.
    let page = alice.get(&format!("{todos}?limit=2")).await.expect(200);
    assert_eq!(
        page,
        json!({"items": created[0..2], "nextCursor": created[1]["id"]})
    );
    let page = alice
        .get(&format!("{todos}?limit=2&after={}", id_of(&created[1])))
        .await
        .expect(200);
    assert_eq!(
        page,
        json!({"items": created[2..4], "nextCursor": created[3]["id"]})
    );
    let page = bob
        .get(&format!("{todos}?after={}&limit=5", id_of(&created[3])))
        .await
        .expect(200);
    assert_eq!(page, json!({"items": created[4..6], "nextCursor": null}));
    let page = alice.get(&format!("{todos}?limit=200")).await.expect(200);
    assert_eq!(page, json!({"items": created, "nextCursor": null}));
    for query in [
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=ten",
        "after=todo-3",
    ] {
        alice
            .get(&format!("{todos}?{query}"))
            .await
            .expect_error(400, "bad_request");
    }

    // Any member changes and deletes todos.
    let patched = bob
        .patch(&first_path, &json!({"done": true}))
        .await
        .expect(200);
    assert_eq!(patched["done"], true);
    assert_eq!(patched["title"], "todo 1");
    for key in ["id", "workspaceId", "createdBy", "createdAt"] {
        assert_eq!(patched[key], first[key], "{key}");
    }
    assert_utc_timestamp(&patched["updatedAt"]);
    assert!(
        text(&patched, "updatedAt") >= text(&first, "updatedAt"),
        "{patched}"
    );
    let retitled = alice
        .patch(&first_path, &json!({"title": "renamed"}))
        .await
        .expect(200);
    assert_eq!(retitled["title"], "renamed");
    assert_eq!(retitled["done"], true);
    assert_eq!(bob.get(&first_path).await.expect(200), retitled);
    let second_path = format!("{todos}/{}", id_of(&created[1]));
    bob.delete(&second_path).await.expect(204);
    bob.get(&second_path).await.expect_error(404, "not_found");
    bob.delete(&second_path)
        .await
        .expect_error(404, "not_found");
    alice
        .patch(&second_path, &json!({"done": true}))
        .await
        .expect_error(404, "not_found");
    let mut expected = created.clone();
    expected[0] = retitled;
    expected.remove(1);
    assert_eq!(alice.items(&todos).await, expected);

    // Channels: `general` exists and is never deleted.
    let channels = world.ws_path("channels");
    let listed = bob.items(&channels).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let general = listed[0].clone();
    assert_eq!(
        keys(&general),
        [
            "createdAt",
            "createdBy",
            "id",
            "isDefault",
            "name",
            "updatedAt",
            "workspaceId"
        ]
    );
    assert_eq!(general["name"], "general");
    assert_eq!(general["isDefault"], true);
    assert_eq!(general["workspaceId"], ws.as_str());
    let general_path = format!("{channels}/{}", id_of(&general));
    for who in [alice, admin] {
        who.delete(&general_path)
            .await
            .expect_error(409, "conflict");
    }
    assert_eq!(bob.get(&general_path).await.expect(200), general);
    let random = bob.create(ws, "channels", json!({"name": "random"})).await;
    assert_eq!(random["name"], "random");
    assert_eq!(random["isDefault"], false);
    assert_eq!(random["createdBy"], bob.id());
    let random_path = format!("{channels}/{}", id_of(&random));
    let renamed = alice
        .patch(&random_path, &json!({"name": "off-topic"}))
        .await
        .expect(200);
    assert_eq!(renamed["name"], "off-topic");
    assert_eq!(renamed["id"], random["id"]);
    assert_eq!(bob.items(&channels).await, [general.clone(), renamed]);
    let long_name = "c".repeat(101);
    for body in [
        json!({"name": ""}),
        json!({"name": long_name}),
        json!({}),
        json!({"isDefault": true}),
    ] {
        alice
            .patch(&random_path, &body)
            .await
            .expect_error(400, "bad_request");
    }
    alice
        .post(&channels, &json!({"name": ""}))
        .await
        .expect_error(400, "bad_request");
    alice.delete(&random_path).await.expect(204);
    alice.get(&random_path).await.expect_error(404, "not_found");
    assert_eq!(bob.items(&channels).await, [general]);

    // Notes: their author and admins, nobody else.
    let notes = world.ws_path("notes");
    let note = alice
        .create(ws, "notes", json!({"content": "Alice's secret"}))
        .await;
    assert_eq!(
        keys(&note),
        [
            "content",
            "createdAt",
            "createdBy",
            "id",
            "updatedAt",
            "workspaceId"
        ]
    );
    assert_eq!(note["content"], "Alice's secret");
    assert_eq!(note["createdBy"], alice.id());
    let note_path = format!("{notes}/{}", id_of(&note));
    assert_eq!(alice.get(&note_path).await.expect(200), note);
    assert_eq!(admin.get(&note_path).await.expect(200), note);
    bob.get(&note_path).await.expect_error(404, "not_found");
    bob.patch(&note_path, &json!({"content": "Bob was here"}))
        .await
        .expect_error(404, "not_found");
    bob.delete(&note_path).await.expect_error(404, "not_found");
    carol.get(&note_path).await.expect_error(404, "not_found");
    let bobs = bob
        .create(ws, "notes", json!({"content": "Bob's own"}))
        .await;
    assert_eq!(alice.items(&notes).await, vec![note.clone()]);
    assert_eq!(bob.items(&notes).await, vec![bobs.clone()]);
    assert_eq!(admin.items(&notes).await, [note.clone(), bobs.clone()]);
    assert_eq!(
        bob.get(&format!("{notes}?limit=1")).await.expect(200),
        json!({"items": [bobs], "nextCursor": null}),
        "a page holds only what I may see"
    );
    let edited = admin
        .patch(&note_path, &json!({"content": "edited by the admin"}))
        .await
        .expect(200);
    assert_eq!(edited["content"], "edited by the admin");
    assert_eq!(edited["createdBy"], alice.id());
    assert_eq!(alice.get(&note_path).await.expect(200), edited);
    for body in [
        json!({"content": ""}),
        json!({"content": "x".repeat(10_001)}),
    ] {
        alice
            .post(&notes, &body)
            .await
            .expect_error(400, "bad_request");
    }
    alice.delete(&note_path).await.expect(204);
    admin.get(&note_path).await.expect_error(404, "not_found");
    admin
        .delete(&format!("{notes}/{}", id_of(&bobs)))
        .await
        .expect(204);
    assert!(admin.items(&notes).await.is_empty());
    let longest = alice
        .create(ws, "notes", json!({"content": "x".repeat(10_000)}))
        .await;
    assert_eq!(text(&longest, "content").len(), 10_000);
}

/// A bad request: method, path, content type, body; then the status and error code it
/// gets.
type Case<'a> = (
    Method,
    String,
    Option<&'a str>,
    Option<Vec<u8>>,
    u16,
    &'a str,
);

/// What a bad request might have changed, as Alice and the admin see it.
async fn snapshot(world: &AppWorld, other_ws: &str) -> Vec<Vec<Value>> {
    let mut all = Vec::new();
    for path in [
        "/api/workspaces".to_owned(),
        world.ws_path("members"),
        world.ws_path("todos"),
        world.ws_path("channels"),
        world.ws_path("notes"),
        format!("/api/workspaces/{other_ws}/todos"),
    ] {
        all.push(world.alice.items(&path).await);
    }
    all.push(world.admin.items("/api/users").await);
    all
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let world = AppWorld::start().await;
    let AppWorld { alice, bob, ws, .. } = &world;
    alice.create(ws, "todos", json!({"title": "keep me"})).await;
    let todo = alice.create(ws, "todos", json!({"title": "and me"})).await;
    alice
        .create(ws, "notes", json!({"content": "me too"}))
        .await;
    let other_ws = id_of(&alice.create_workspace("Other").await);
    let other_todo = alice
        .create(&other_ws, "todos", json!({"title": "elsewhere"}))
        .await;
    let todos = world.ws_path("todos");
    let one = format!("{todos}/{}", id_of(&todo));
    // Another workspace's todo, under this workspace's path.
    let elsewhere = format!("{todos}/{}", id_of(&other_todo));
    let before = snapshot(&world, &other_ws).await;

    let json_type = Some("application/json");
    let body = |value: Value| Some(serde_json::to_vec(&value).unwrap());
    let long_title = body(json!({"title": "t".repeat(501)}));
    let huge = body(json!({"title": "t".repeat(70 * 1024)}));
    let huge_note = body(json!({"content": "n".repeat(70 * 1024)}));
    let valid = || body(json!({"title": "valid"}));
    let bytes = |text: &str| Some(text.as_bytes().to_vec());
    let cases: Vec<Case> = vec![
        // Malformed, unknown, missing, mistyped and out-of-range fields.
        (
            Method::POST,
            todos.clone(),
            json_type,
            bytes("{\"title\":"),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            todos.clone(),
            json_type,
            bytes("not json"),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            todos.clone(),
            json_type,
            bytes(""),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            todos.clone(),
            json_type,
            body(json!({"title": "x", "priority": 1})),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            todos.clone(),
            json_type,
            body(json!({})),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            todos.clone(),
            json_type,
            body(json!({"title": ""})),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            todos.clone(),
            json_type,
            long_title.clone(),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            todos.clone(),
            json_type,
            body(json!({"title": 5})),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            todos.clone(),
            json_type,
            body(json!({"title": "x", "done": "yes"})),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            todos.clone(),
            json_type,
            body(json!(["x"])),
            400,
            "bad_request",
        ),
        (
            Method::PATCH,
            one.clone(),
            json_type,
            body(json!({})),
            400,
            "bad_request",
        ),
        (
            Method::PATCH,
            one.clone(),
            json_type,
            body(json!({"title": ""})),
            400,
            "bad_request",
        ),
        (
            Method::PATCH,
            one.clone(),
            json_type,
            long_title,
            400,
            "bad_request",
        ),
        (
            Method::PATCH,
            one.clone(),
            json_type,
            body(json!({"done": "yes"})),
            400,
            "bad_request",
        ),
        (
            Method::PATCH,
            one.clone(),
            json_type,
            body(json!({"id": other_todo["id"]})),
            400,
            "bad_request",
        ),
        (
            Method::PATCH,
            one.clone(),
            json_type,
            body(json!({"workspaceId": other_ws})),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            "/api/workspaces".to_owned(),
            json_type,
            bytes("{"),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            "/api/workspaces".to_owned(),
            json_type,
            body(json!({"name": ""})),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            "/api/login".to_owned(),
            json_type,
            bytes("{"),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            world.ws_path("members"),
            json_type,
            body(json!({"userId": bob.id(), "role": "member", "extra": true})),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            world.ws_path("notes"),
            json_type,
            body(json!({"content": "n".repeat(10_001)})),
            400,
            "bad_request",
        ),
        // Too large.
        (
            Method::POST,
            todos.clone(),
            json_type,
            huge.clone(),
            413,
            "payload_too_large",
        ),
        (
            Method::PATCH,
            one.clone(),
            json_type,
            huge,
            413,
            "payload_too_large",
        ),
        (
            Method::POST,
            world.ws_path("notes"),
            json_type,
            huge_note,
            413,
            "payload_too_large",
        ),
        // Not JSON.
        (
            Method::POST,
            todos.clone(),
            Some("text/plain"),
            valid(),
            415,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            todos.clone(),
            Some("application/x-www-form-urlencoded"),
            bytes("title=x"),
            415,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            todos.clone(),
            None,
            valid(),
            415,
            "unsupported_media_type",
        ),
        (
            Method::PATCH,
            one.clone(),
            Some("text/plain"),
            valid(),
            415,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/api/workspaces".to_owned(),
            Some("text/plain"),
            body(json!({"name": "x"})),
            415,
            "unsupported_media_type",
        ),
        // Ids that are not ids.
        (
            Method::GET,
            "/api/workspaces/not-a-uuid".to_owned(),
            None,
            None,
            400,
            "bad_request",
        ),
        (
            Method::GET,
            "/api/workspaces/not-a-uuid/todos".to_owned(),
            None,
            None,
            400,
            "bad_request",
        ),
        (
            Method::GET,
            format!("{todos}/42"),
            None,
            None,
            400,
            "bad_request",
        ),
        (
            Method::PATCH,
            format!("{todos}/42"),
            json_type,
            valid(),
            400,
            "bad_request",
        ),
        (
            Method::DELETE,
            format!("{todos}/42"),
            None,
            None,
            400,
            "bad_request",
        ),
        (
            Method::DELETE,
            world.ws_path("members/not-a-uuid"),
            None,
            None,
            400,
            "bad_request",
        ),
        // Another workspace's todo under this workspace.
        (Method::GET, elsewhere.clone(), None, None, 404, "not_found"),
        (
            Method::PATCH,
            elsewhere.clone(),
            json_type,
            body(json!({"title": "stolen"})),
            404,
            "not_found",
        ),
        (Method::DELETE, elsewhere, None, None, 404, "not_found"),
        // No such collection.
        (
            Method::GET,
            world.ws_path("widgets"),
            None,
            None,
            404,
            "not_found",
        ),
    ];
    // Every case runs, so that one failure shows them all.
    let mut wrong = Vec::new();
    for (method, path, content_type, body, status, code) in cases {
        let shown = body
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(60)]).into_owned());
        let what = format!("{method} {path} {content_type:?} {shown:?}");
        let reply = alice.raw(method, &path, content_type, body, &[]).await;
        if reply.status != status {
            wrong.push(format!(
                "{what}: expected {status}, got {}: {}",
                reply.status, reply.body
            ));
        } else {
            reply.expect_error(status, code);
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // A cookie-authenticated change from another origin.
    alice
        .raw(
            Method::POST,
            &todos,
            json_type,
            valid(),
            &[("origin", "http://evil.example.com")],
        )
        .await
        .expect_error(403, "forbidden");
    alice
        .raw(
            Method::DELETE,
            &one,
            None,
            None,
            &[("origin", "http://evil.example.com")],
        )
        .await
        .expect_error(403, "forbidden");

    assert_eq!(
        snapshot(&world, &other_ws).await,
        before,
        "a refused request changed something"
    );

    // What is allowed right at the limits, and from the same origin.
    let origin = world.server.url();
    alice
        .raw(
            Method::POST,
            &todos,
            json_type,
            valid(),
            &[("origin", &origin)],
        )
        .await
        .expect(201);
    let longest = alice
        .create(ws, "todos", json!({"title": "t".repeat(500)}))
        .await;
    assert_eq!(text(&longest, "title").len(), 500);
    let patched = alice
        .patch(&one, &json!({"title": "t".repeat(500), "done": true}))
        .await
        .expect(200);
    assert_eq!(patched["done"], true);
}

/// Asserts that `output` is a success; returns its stdout.
fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

/// The API token printed in `stdout`.
fn printed_token(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .find(|word| word.starts_with("hrld_"))
        .unwrap_or_else(|| panic!("no hrld_ token in {stdout:?}"))
        .to_owned()
}

#[tokio::test]
async fn cli_adds_users_and_makes_tokens() {
    let server = TestServer::app().await;
    let dir = server.data_dir().to_str().expect("a UTF-8 path").to_owned();
    let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;

    // A user with a chosen password, added while the server runs.
    let add_dana = [
        "user",
        "add",
        "--data-dir",
        &dir,
        "--email",
        "dana@example.com",
        "--name",
        "Dana",
        "--role",
        "member",
    ];
    success(&run_herald_with(&add_dana, &[("HERALD_USER_PASSWORD", PASSWORD)]).await);
    let dana = AppClient::login(&server, "dana@example.com", PASSWORD).await;
    assert_eq!(
        dana.user,
        json!({"id": dana.user["id"], "email": "dana@example.com", "name": "Dana", "role": "member"})
    );
    let again = run_herald_with(&add_dana, &[("HERALD_USER_PASSWORD", PASSWORD)]).await;
    assert!(!again.status.success(), "the email is taken");

    // A generated password, printed once.
    let stdout = success(
        &run_herald_with(
            &[
                "user",
                "add",
                "--data-dir",
                &dir,
                "--email",
                "eli@example.com",
                "--name",
                "Eli",
                "--role",
                "admin",
            ],
            &[],
        )
        .await,
    );
    let mut eli = None;
    let mut answers = Vec::new();
    for word in stdout.split_whitespace().filter(|word| word.len() >= 8) {
        let reply = AppClient::anonymous(&server)
            .post(
                "/api/login",
                &json!({"email": "eli@example.com", "password": word}),
            )
            .await;
        if reply.status == 200 {
            eli = Some(reply.expect(200));
            break;
        }
        answers.push(format!("{word:?}: {} {}", reply.status, reply.body));
    }
    let eli = eli.unwrap_or_else(|| {
        panic!(
            "no password that logs in, in {stdout:?}; answers: {answers:#?}; server: {}",
            server.stderr()
        )
    });
    assert_eq!(eli["role"], "admin");

    // A token acts as its user, without a session.
    let stdout = success(
        &run_herald_with(
            &["user", "token", "dana@example.com", "--data-dir", &dir],
            &[],
        )
        .await,
    );
    let token = printed_token(&stdout);
    let as_token = AppClient::with_bearer(&server, &token);
    assert_eq!(as_token.get("/api/me").await.expect(200), dana.user);
    let workspace = as_token.create_workspace("Dana's").await;
    assert_eq!(workspace["createdBy"], dana.id());
    assert_eq!(workspace["role"], "owner");
    assert_eq!(dana.items("/api/workspaces").await, [workspace]);
    let notify = json!({"userId": admin.id(), "data": {"from": "Dana"}});
    as_token
        .post("/api/notify", &notify)
        .await
        .expect_error(403, "forbidden");

    // A `--notify` token may also notify.
    let stdout = success(
        &run_herald_with(
            &[
                "user",
                "token",
                "dana@example.com",
                "--name",
                "notifier",
                "--notify",
                "--data-dir",
                &dir,
            ],
            &[],
        )
        .await,
    );
    let notifier = AppClient::with_bearer(&server, &printed_token(&stdout));
    assert_eq!(notifier.get("/api/me").await.expect(200), dana.user);
    let sent = notifier.post("/api/notify", &notify).await.expect(202);
    assert_eq!(keys(&sent), ["id"]);

    // No token for an unknown user; a made-up token is refused.
    let unknown = run_herald_with(
        &["user", "token", "nobody@example.com", "--data-dir", &dir],
        &[],
    )
    .await;
    assert!(!unknown.status.success());
    let forged = format!("{token}x");
    AppClient::with_bearer(&server, &forged)
        .get("/api/me")
        .await
        .expect_error(401, "unauthorized");
}

/// Whether process `pid` holds SQLite's shared lock on the database at `path`: a POSIX
/// read lock on the 510 bytes after the pending byte (offset 2^30 + 2), as `/proc/locks`
/// lists it. Every process with a connection open on a WAL database holds it; the last
/// connection to close anywhere takes it exclusively to know that it is the last one.
fn holds_sqlite_shared_lock(pid: u32, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(path).expect("the database").ino();
    let locks = std::fs::read_to_string("/proc/locks").expect("/proc/locks");
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // id: POSIX ADVISORY READ pid major:minor:inode start end
        matches!(
            fields.as_slice(),
            [_, "POSIX", "ADVISORY", "READ", owner, file, "1073741826", "1073742335"]
                if *owner == pid.to_string()
                    && file.rsplit(':').next() == Some(inode.to_string().as_str())
        )
    })
}

/// `herald user add` on the data directory of a running server shares `herald.db` with it:
/// what either process commits stays, through the other's opens and closes and a `kill -9`
/// of the server. The server keeps SQLite's shared lock on the file all along (had it lost
/// it, a CLI closing last would checkpoint and delete the WAL the server still writes to).
/// Each CLI run is followed by the server's own writes (a todo in the log's batch, a
/// session through the app's pool), and after the restart every user logs in and every
/// todo is listed.
#[tokio::test]
async fn the_cli_and_a_running_server_keep_each_other_s_rows() {
    let mut server = TestServer::app().await;
    let dir = server.data_dir().to_str().expect("a UTF-8 path").to_owned();
    let database = server.data_dir().join("herald.db");
    assert!(holds_sqlite_shared_lock(server.pid(), &database));
    let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let ws = id_of(&admin.create_workspace("shared file").await);
    let emails: Vec<String> = (0..4).map(|i| format!("user{i}@example.com")).collect();
    for (i, email) in emails.iter().enumerate() {
        let add = [
            "user",
            "add",
            "--data-dir",
            &dir,
            "--email",
            email,
            "--name",
            "User",
            "--role",
            "member",
        ];
        success(&run_herald_with(&add, &[("HERALD_USER_PASSWORD", PASSWORD)]).await);
        admin
            .post(
                &format!("/api/workspaces/{ws}/todos"),
                &json!({"title": format!("todo {i}")}),
            )
            .await
            .expect(201);
        AppClient::login(&server, email, PASSWORD).await;
        assert!(holds_sqlite_shared_lock(server.pid(), &database));
    }

    server.kill9().await;
    server.restart().await;
    for email in &emails {
        let reply = AppClient::anonymous(&server)
            .post("/api/login", &json!({"email": email, "password": PASSWORD}))
            .await;
        assert_eq!(
            reply.status,
            200,
            "{email} after the restart: {}; server: {}",
            reply.body,
            server.stderr()
        );
    }
    let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let todos = admin.items(&format!("/api/workspaces/{ws}/todos")).await;
    let mut titles: Vec<&str> = todos
        .iter()
        .map(|todo| todo["title"].as_str().expect("a title"))
        .collect();
    titles.sort_unstable();
    assert_eq!(titles, ["todo 0", "todo 1", "todo 2", "todo 3"]);
}
