//! Resource tags, validated as ECS validates them.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// One tag: a key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// 1–128 characters; may not start with `aws:`.
    pub key: Option<String>,
    /// 0–256 characters.
    pub value: Option<String>,
}

/// At most this many tags on one resource.
pub const MAX_TAGS: usize = 50;

/// Checks tags being added to a resource: key and value lengths, the
/// reserved `aws:` prefix, and the per-resource limit (counting `existing`).
pub fn validate_tags(tags: &[Tag], existing: usize) -> Result<(), ValidationError> {
    for t in tags {
        let key = t.key.as_deref().unwrap_or("");
        if key.is_empty() || key.chars().count() > 128 {
            return Err(ValidationError::invalid(format!(
                "tag key {key:?} must be 1 to 128 characters long"
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ValidationError::invalid(format!(
                "tag key {key:?} uses the reserved prefix \"aws:\"; choose another key"
            )));
        }
        if t.value.as_deref().unwrap_or("").chars().count() > 256 {
            return Err(ValidationError::invalid(format!(
                "tag {key:?}: the value is longer than 256 characters"
            )));
        }
    }
    if existing + tags.len() > MAX_TAGS {
        return Err(ValidationError::invalid(format!(
            "a resource may carry at most {MAX_TAGS} tags; this request would leave {}",
            existing + tags.len()
        )));
    }
    Ok(())
}

/// Adds or replaces `new` tags in `tags`, keyed by tag key.
pub fn merge_tags(tags: &mut Vec<Tag>, new: &[Tag]) {
    for t in new {
        if let Some(slot) = tags.iter_mut().find(|e| e.key == t.key) {
            slot.value = t.value.clone();
        } else {
            tags.push(t.clone());
        }
    }
}

/// How many of `new` are keys not already in `tags`.
pub fn count_new_keys(tags: &[Tag], new: &[Tag]) -> usize {
    new.iter()
        .filter(|t| !tags.iter().any(|e| e.key == t.key))
        .count()
}
