//! The app's resources as the REST API shows them, the bodies that create and change them,
//! and the checks on every field.
//!
//! A resource serializes exactly as `GET` returns it, and that same JSON is the `data` of its
//! events: one shape, one serializer.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::error::AppError;

/// Stores an enum with `as_str` and `FromStr` as the TEXT of its name, through `sqlx::Any`
/// (whose drivers know no enums).
macro_rules! text_column {
    ($name:ty) => {
        impl sqlx::Type<sqlx::Any> for $name {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <str as sqlx::Type<sqlx::Any>>::type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, sqlx::Any>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $name {
            fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
                Ok(text.parse()?)
            }
        }
    };
}

/// Longest todo title, in characters.
pub const MAX_TITLE: usize = 500;
/// Longest workspace, channel or user name, in characters.
pub const MAX_NAME: usize = 100;
/// Longest note, in characters.
pub const MAX_CONTENT: usize = 10_000;
/// Longest email address (RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;
/// Shortest password. Longer ones are up to the user.
pub const MIN_PASSWORD: usize = 8;
/// Longest password: argon2 hashes any length, but a megabyte password is an attack.
pub const MAX_PASSWORD: usize = 256;

/// A user's global role. Stored as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    /// May read every workspace and note, create users and send notifications.
    Admin,
    /// Sees what their workspace memberships allow.
    Member,
}

/// A member's role in one workspace. Stored as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// May rename and delete the workspace, manage members and broadcast.
    Owner,
    /// May read and change the workspace's todos and channels, and keep notes.
    Member,
}

impl UserRole {
    /// Its name, as JSON and the database spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

impl std::str::FromStr for UserRole {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            other => Err(format!("unknown role {other:?} (expected admin or member)")),
        }
    }
}

text_column!(UserRole);

impl MemberRole {
    /// Its name, as JSON and the database spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
        }
    }
}

impl std::str::FromStr for MemberRole {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "owner" => Ok(Self::Owner),
            "member" => Ok(Self::Member),
            other => Err(format!("unknown role {other:?} (expected owner or member)")),
        }
    }
}

text_column!(MemberRole);

/// A user, without credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
pub struct User {
    /// Its id.
    pub id: String,
    /// Unique, stored in lower case (see [`normalize_email`]).
    pub email: String,
    /// Shown to other users, and in events as the author.
    pub name: String,
    /// Global role.
    pub role: UserRole,
}

/// A workspace, as its events carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: String,
    /// When it was last renamed.
    pub updated_at: String,
}

/// A workspace as the REST API shows it to one caller: with the caller's role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkspaceView {
    /// The workspace.
    #[serde(flatten)]
    pub workspace: Workspace,
    /// The caller's role in it; `null` for an admin who is not a member.
    pub role: Option<MemberRole>,
}

/// A user's membership of a workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The workspace.
    pub workspace_id: String,
    /// The member.
    pub user_id: String,
    /// The member's name.
    pub name: String,
    /// The member's email.
    pub email: String,
    /// Owner or member.
    pub role: MemberRole,
    /// When they joined.
    pub added_at: String,
}

/// A todo, visible to every member of its workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Todo {
    /// Its id.
    pub id: String,
    /// Its workspace.
    pub workspace_id: String,
    /// 1–500 characters.
    pub title: String,
    /// Whether it is done.
    #[sqlx(try_from = "crate::db::Flag")]
    pub done: bool,
    /// Its author.
    pub created_by: String,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

/// A channel, visible to every member of its workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    /// Its id.
    pub id: String,
    /// Its workspace.
    pub workspace_id: String,
    /// 1–100 characters.
    pub name: String,
    /// The workspace's `general` channel, which cannot be deleted.
    #[sqlx(try_from = "crate::db::Flag")]
    pub is_default: bool,
    /// Its author.
    pub created_by: String,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

/// A private note, visible to its author and to admins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    /// Its id.
    pub id: String,
    /// Its workspace.
    pub workspace_id: String,
    /// 1–10,000 characters.
    pub content: String,
    /// Its author, the only member who may see it.
    pub created_by: String,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

/// `POST /api/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The account's email.
    pub email: String,
    /// Its password.
    pub password: String,
}

/// `POST /api/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Unique email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Initial password.
    pub password: String,
    /// Global role.
    pub role: UserRole,
}

impl NewUser {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the first bad field.
    pub fn validate(&self) -> Result<(), AppError> {
        email(&self.email)?;
        text("name", &self.name, MAX_NAME)?;
        password("password", &self.password)
    }
}

/// A user as the list of users shows it: with whether the account is active.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
pub struct Account {
    /// The user.
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub user: User,
    /// `false` once an admin deactivated it: it cannot sign in, and its sessions and API
    /// tokens are refused.
    #[sqlx(try_from = "crate::db::Flag")]
    pub active: bool,
}

/// `POST /api/me/password`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now, to prove it is the user.
    pub current: String,
    /// The new password, checked as a new user's is.
    pub new: String,
}

/// `POST /api/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A label, to recognize the token later: 1–100 characters.
    pub name: String,
    /// Its lifetime, such as `30d` or `12h`; without it the token lasts until revoked.
    pub ttl: Option<String>,
    /// Whether it may send notifications and broadcasts (admins only).
    #[serde(default)]
    pub notify: bool,
}

/// An API token as its owner sees it: never the secret, nor its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// Its public id, for `DELETE /api/tokens/{id}`.
    pub id: String,
    /// Its label.
    pub name: String,
    /// Whether it may send notifications and broadcasts.
    pub notify: bool,
    /// When it was made.
    pub created_at: String,
    /// When it stops working; `null`: when revoked.
    pub expires_at: Option<String>,
    /// When it was last used, to the minute; `null`: never.
    pub last_used_at: Option<String>,
}

/// Checks a password's length: [`MIN_PASSWORD`]–[`MAX_PASSWORD`] characters.
///
/// # Errors
///
/// `Invalid` naming `field`.
pub fn password(field: &str, value: &str) -> Result<(), AppError> {
    let chars = value.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&chars) {
        return Err(AppError::invalid_field(
            field,
            format!("{field} must be {MIN_PASSWORD}–{MAX_PASSWORD} characters"),
        ));
    }
    Ok(())
}

/// Unix seconds as RFC 3339 in UTC, as the API shows times.
pub fn unix_to_rfc3339(secs: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `POST /api/workspaces` and `PATCH /api/workspaces/{ws}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceBody {
    /// 1–100 characters.
    pub name: String,
}

/// `POST /api/workspaces/{ws}/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewMember {
    /// Who to add.
    pub user_id: String,
    /// Their role.
    pub role: MemberRole,
}

/// `POST …/todos`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTodo {
    /// 1–500 characters.
    pub title: String,
    /// Defaults to false.
    #[serde(default)]
    pub done: bool,
}

/// `PATCH …/todos/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TodoPatch {
    /// New title.
    pub title: Option<String>,
    /// New state.
    pub done: Option<bool>,
}

/// `POST …/channels` and `PATCH …/channels/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    /// 1–100 characters; optional in a patch.
    pub name: Option<String>,
}

/// `POST …/notes` and `PATCH …/notes/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// 1–10,000 characters; optional in a patch.
    pub content: Option<String>,
}

/// `POST /api/notify`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Notify {
    /// The recipient.
    pub user_id: String,
    /// Any JSON.
    pub data: serde_json::Value,
}

/// `POST /api/workspaces/{ws}/broadcast`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Broadcast {
    /// Any JSON.
    pub data: serde_json::Value,
}

/// Checks a required text field: not blank, at most `max` characters.
///
/// # Errors
///
/// `Invalid` naming the field.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), AppError> {
    if value.trim().is_empty() {
        return Err(AppError::invalid_field(
            field,
            format!("{field} must not be empty"),
        ));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(AppError::invalid_field(
            field,
            format!("{field} is {chars} characters; the limit is {max}"),
        ));
    }
    if value.contains('\0') {
        return Err(AppError::invalid_field(
            field,
            format!("{field} must not contain NUL"),
        ));
    }
    Ok(())
}

/// Checks an email address: the shape `local@domain`, at most 254 characters.
///
/// # Errors
///
/// `Invalid`.
pub fn email(value: &str) -> Result<(), AppError> {
    let ok = value.len() <= MAX_EMAIL
        && value
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid_field(
            "email",
            format!("email must look like name@domain and be at most {MAX_EMAIL} characters"),
        ))
    }
}

/// An email as it is stored and looked up: in lower case, so that addresses differing only
/// in case are one account.
pub fn normalize_email(email: &str) -> String {
    email.to_lowercase()
}

/// Checks that `value` is a UUID, the shape of every id; normalizes it to lower case.
///
/// # Errors
///
/// `Invalid` naming what was expected.
pub fn id(what: &str, value: &str) -> Result<String, AppError> {
    uuid::Uuid::try_parse(value)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            AppError::invalid_field(what, format!("{what} {value:?} is not a valid id (a UUID)"))
        })
}

/// A fresh id: UUID v7, so ids sort by creation and pagination can use them as cursors.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

/// The current time as RFC 3339 with milliseconds, in UTC.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_limits() {
        let cases: &[(&str, Option<&str>)] = &[
            ("a", None),
            ("", Some("title must not be empty")),
            ("   ", Some("title must not be empty")),
            ("a\0b", Some("title must not contain NUL")),
        ];
        for (value, want) in cases {
            let got = text("title", value, MAX_TITLE).err().map(|e| e.message);
            assert_eq!(got.as_deref(), *want, "{value:?}");
        }
        assert!(text("title", &"é".repeat(MAX_TITLE), MAX_TITLE).is_ok());
        assert!(text("title", &"é".repeat(MAX_TITLE + 1), MAX_TITLE).is_err());
    }

    /// The database spells roles as JSON does.
    #[test]
    fn roles_round_trip_through_their_names() {
        for role in [UserRole::Admin, UserRole::Member] {
            assert_eq!(role.as_str().parse::<UserRole>(), Ok(role));
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        for role in [MemberRole::Owner, MemberRole::Member] {
            assert_eq!(role.as_str().parse::<MemberRole>(), Ok(role));
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        assert!("Admin".parse::<UserRole>().is_err());
        assert!("admin".parse::<MemberRole>().is_err());
        assert_eq!(normalize_email("Alice@Example.COM"), "alice@example.com");
    }

    #[test]
    fn ids_and_emails() {
        assert!(id("todo", "not-an-id").is_err());
        assert_eq!(
            id("todo", "0192F7B2-0000-7000-8000-000000000000").unwrap(),
            "0192f7b2-0000-7000-8000-000000000000"
        );
        assert!(email("a@b").is_ok());
        for bad in ["", "a", "@b", "a@", "a b@c"] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert!(new_id() < new_id());
    }
}
