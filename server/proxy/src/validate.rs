//! Turns request bodies into store inputs, enforcing the documented limits.
//! Every error names the field at fault.

use confab_wire::conversations as wire;

use crate::error::ApiError;
use crate::ids::Id;
use confab_wire::limits::{self, Refusal};

use crate::limits::{DEFAULT_TITLE, MAX_MESSAGES_PER_REQUEST};
use crate::store::{NewConversation, NewMessage, Patch};

pub fn id(field: &str, raw: &str) -> Result<Id, ApiError> {
    Id::parse(raw).map_err(|e| ApiError::invalid(field, e))
}

/// Path ids: anything that is not a valid id cannot be the caller's, so 404.
pub fn path_id(raw: &str) -> Result<Id, ApiError> {
    Id::parse(raw).map_err(|_| ApiError::not_found("conversation"))
}

pub fn title(field: &str, raw: &str) -> Result<String, ApiError> {
    limits::title(raw).map_err(|why| ApiError::invalid(field, why))
}

pub fn message(field: &str, m: wire::NewMessage) -> Result<NewMessage, ApiError> {
    let id = match m.id {
        Some(raw) => id(&format!("{field}.id"), &raw)?,
        None => Id::new(),
    };
    match limits::content(&m.content) {
        Ok(()) => {}
        Err(why @ Refusal::TooLarge) => {
            return Err(ApiError::too_large(format!("{field}.content: {why}")));
        }
        Err(why) => return Err(ApiError::invalid(&format!("{field}.content"), why)),
    }
    Ok(NewMessage {
        id,
        role: m.role,
        content: m.content,
    })
}

pub fn messages(field: &str, list: Vec<wire::NewMessage>) -> Result<Vec<NewMessage>, ApiError> {
    if list.len() > MAX_MESSAGES_PER_REQUEST {
        return Err(ApiError::too_large(format!(
            "{field}: at most {MAX_MESSAGES_PER_REQUEST} messages per request"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.into_iter().enumerate() {
        let m = message(&format!("{field}[{i}]"), m)?;
        if !seen.insert(m.id) {
            return Err(ApiError::invalid(
                &format!("{field}[{i}].id"),
                "appears twice",
            ));
        }
        out.push(m);
    }
    Ok(out)
}

pub fn create(body: wire::CreateConversation) -> Result<NewConversation, ApiError> {
    Ok(NewConversation {
        id: match body.id {
            Some(raw) => id("id", &raw)?,
            None => Id::new(),
        },
        title: match body.title {
            Some(raw) => title("title", &raw)?,
            None => DEFAULT_TITLE.to_owned(),
        },
        messages: messages("messages", body.messages.unwrap_or_default())?,
    })
}

/// `If-Match` (an ETag-style version, optionally quoted) or the body's `version`.
pub fn patch(body: wire::UpdateConversation, if_match: Option<u64>) -> Result<Patch, ApiError> {
    let expected_version = match (body.version, if_match) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid(
                "version",
                "differs from the If-Match header",
            ));
        }
        (a, b) => a.or(b),
    };
    let patch = Patch {
        title: body.title.map(|t| title("title", &t)).transpose()?,
        pinned: body.pinned,
        archived: body.archived,
        assistant: body
            .assistant
            .map(|a| {
                a.checked()
                    .map_err(|(field, why)| ApiError::invalid(field, why))
            })
            .transpose()?,
        messages: body.messages.map(|m| messages("messages", m)).transpose()?,
        expected_version,
    };
    if patch.title.is_none()
        && patch.pinned.is_none()
        && patch.archived.is_none()
        && patch.assistant.is_none()
        && patch.messages.is_none()
    {
        return Err(ApiError::invalid(
            "body",
            "nothing to change: give title, pinned, archived, assistant or messages",
        ));
    }
    Ok(patch)
}

pub fn if_match(headers: &axum::http::HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = value
        .to_str()
        .map_err(|_| ApiError::invalid("If-Match", "must be a version number"))?;
    let raw = raw.trim().trim_start_matches("W/").trim_matches('"');
    raw.parse()
        .map(Some)
        .map_err(|_| ApiError::invalid("If-Match", "must be a version number"))
}

pub fn page_limit(raw: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match raw {
        None => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(
                "limit",
                format!("must be a number from 1 to {max}"),
            )),
        },
    }
}
