//! Pagination: `maxResults` checks and opaque `nextToken`s.
//!
//! A token encodes the sort key of the last item returned, so a page never
//! repeats or skips an item when others are added between calls.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::EcsError;

/// Checks `maxResults` (1..=`max`) and returns the page size.
pub fn page_size(max_results: Option<i64>, max: usize) -> Result<usize, EcsError> {
    match max_results {
        None => Ok(max),
        Some(n) if n >= 1 && usize::try_from(n).is_ok_and(|n| n <= max) => {
            Ok(usize::try_from(n).unwrap_or(max))
        }
        Some(n) => Err(EcsError::invalid(format!(
            "maxResults {n} is out of range (use 1 to {max})"
        ))),
    }
}

/// Makes the token that resumes after `last`.
pub fn token(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{last}"))
}

/// Reads a token back into the sort key it resumes after.
pub fn resume_after(token: Option<&str>) -> Result<Option<String>, EcsError> {
    let Some(t) = token else { return Ok(None) };
    if t.is_empty() {
        return Ok(None);
    }
    let bad = || {
        EcsError::invalid(
            "nextToken is not valid; pass the nextToken of the previous response unchanged",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(t).map_err(|_| bad())?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    s.strip_prefix("v1|")
        .map(|s| Some(s.to_string()))
        .ok_or_else(bad)
}

/// Cuts one page out of `items` (already sorted), resuming after `after`.
/// Returns the page and the next token, if more remain.
pub fn paginate<T>(
    items: Vec<T>,
    sort_key: impl Fn(&T) -> String,
    after: Option<String>,
    size: usize,
    descending: bool,
) -> (Vec<T>, Option<String>) {
    let mut rest: Vec<T> = match after {
        None => items,
        Some(a) => items
            .into_iter()
            .filter(|i| {
                let k = sort_key(i);
                if descending {
                    k < a
                } else {
                    k > a
                }
            })
            .collect(),
    };
    if rest.len() > size {
        rest.truncate(size);
        let next = rest.last().map(|i| token(&sort_key(i)));
        (rest, next)
    } else {
        (rest, None)
    }
}
