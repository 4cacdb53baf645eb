//! Shell-style wildcards for mirror map sources, one path component at a time (Python's
//! `glob` / `fnmatch`): `*` any run of characters, `?` one character, `[abc]`, `[a-z]` and
//! `[!a-z]` a character of (or not of) a set. A name starting with `.` is matched only by a
//! pattern starting with `.`. Matching is on bytes; no character ever matches `/`.

/// Whether `pattern` has a wildcard, so that it must be matched against directory entries.
pub(crate) fn has_magic(pattern: &[u8]) -> bool {
    pattern.iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// Whether the file name `name` matches the one-component `pattern`.
pub(crate) fn matches(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    match_from(pattern, name)
}

/// Iterative wildcard matching with backtracking to the last `*` (linear space, no recursion).
fn match_from(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where to resume after the last `*`: the pattern index after it and the name index it
    // currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match class(pattern, p, name[n]) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                // An unclosed `[` is a literal.
                None => (name[n] == b'[').then_some(p + 1),
            },
            Some(&c) => (c == name[n]).then_some(p + 1),
            None => None,
        };
        match step {
            Some(next) => {
                p = next;
                n += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    p = sp;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// The set `[...]` starting at `pattern[open]`: whether `c` is in it and the index after it, or
/// `None` when it is not closed.
fn class(pattern: &[u8], open: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = matches!(pattern.get(i), Some(b'!'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let lo = *pattern.get(i)?;
        // A `]` right after `[` or `[!` is a member, not the end.
        if lo == b']' && !first {
            return Some((found != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = pattern[i + 2];
            found |= lo <= c && c <= hi;
            i += 3;
        } else {
            found |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        matches(p.as_bytes(), n.as_bytes())
    }

    #[test]
    fn literals_match_only_themselves() {
        assert!(m("abc", "abc"));
        assert!(!m("abc", "abd"));
        assert!(!m("abc", "ab"));
        assert!(!m("ab", "abc"));
        assert!(m("", ""));
    }

    #[test]
    fn star_matches_any_run() {
        assert!(m("*", "anything"));
        assert!(m("*", ""));
        assert!(m("*.cir", "amp.cir"));
        assert!(!m("*.cir", "amp.cir.bak"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("**x", "yyx"));
        assert!(m("*a*a*a*", "aaa"));
        assert!(!m("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn question_mark_matches_one_character() {
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(!m("a?c", "abbc"));
        assert!(m("???", "xyz"));
    }

    #[test]
    fn sets_ranges_and_negation() {
        assert!(m("[abc]x", "bx"));
        assert!(!m("[abc]x", "dx"));
        assert!(m("v[0-9]", "v7"));
        assert!(!m("v[0-9]", "va"));
        assert!(m("v[!0-9]", "va"));
        assert!(!m("v[!0-9]", "v3"));
        assert!(m("[]]", "]"));
        assert!(m("[!]]", "a"));
        assert!(!m("[!]]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("[*?]", "*"));
        assert!(!m("[*?]", "x"));
        // Not closed: a literal `[`.
        assert!(m("a[b", "a[b"));
        assert!(!m("a[b", "ab"));
    }

    #[test]
    fn hidden_names_need_a_leading_dot() {
        assert!(!m("*", ".hidden"));
        assert!(!m("?hidden", ".hidden"));
        assert!(!m("[.]hidden", ".hidden"));
        assert!(m(".*", ".hidden"));
        assert!(m(".h*", ".hidden"));
    }

    #[test]
    fn magic_is_detected() {
        assert!(has_magic(b"*.cir"));
        assert!(has_magic(b"a?"));
        assert!(has_magic(b"[ab]"));
        assert!(!has_magic(b"plain.cir"));
    }
}
