//! ELBv2 wildcard patterns: `*` matches any run of bytes (also none), `?`
//! exactly one byte; everything else matches itself.

/// Whether `text` matches `pattern`; `ci` compares ASCII letters
/// case-insensitively. Linear in practice: one backtrack point, no recursion.
pub(crate) fn matches(pattern: &[u8], text: &[u8], ci: bool) -> bool {
    let eq = |a: u8, b: u8| a == b || (ci && a.eq_ignore_ascii_case(&b));
    let (mut p, mut t) = (0usize, 0usize);
    // The position after the last `*` seen and the text position it was
    // tried at.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == b'?' || eq(c, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    // Let the last `*` swallow one more byte and retry.
                    p = sp;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn m(p: &str, t: &str) -> bool {
        matches(p.as_bytes(), t.as_bytes(), false)
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(m("/img", "/img"));
        assert!(!m("/img", "/img/"));
        assert!(m("/img/*", "/img/a/b.png"));
        assert!(m("/img/*", "/img/"));
        assert!(!m("/img/*", "/img"));
        assert!(m("*.png", "/a/b.png"));
        assert!(m("/a?c", "/abc"));
        assert!(!m("/a?c", "/ac"));
        assert!(m("*", ""));
        assert!(m("**", "x"));
        assert!(m("/*/b/*", "/a/b/c"));
        assert!(m("/*/b/*", "/x/y/b/c"));
        assert!(!m("/*/b/*", "/x/y/c"));
        assert!(m("a*b*c", "aXXbYYbZZc"));
        assert!(!m("a*b*c", "aXXbYYbZZ"));
        assert!(!m("", "a"));
        assert!(m("", ""));
    }

    #[test]
    fn case() {
        assert!(!m("/API", "/api"));
        assert!(matches(b"*.Example.COM", b"www.example.com", true));
        assert!(!matches(b"*.example.com", b"example.com", true));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!m(&pattern, &text));
    }
}
