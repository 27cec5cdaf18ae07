//! The `Authorization` header's bearer token, as RFC 9110 reads it: the scheme is
//! case-insensitive (`Bearer`, `bearer`, `BEARER`), then one or more spaces, then the token.
//! Shared by the REST API and the veriflier so both accept the same headers.

/// The token of a `Bearer` credential; None for any other scheme or an empty token.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ').trim_end();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_exact() {
        assert_eq!(bearer("Bearer jm_abc"), Some("jm_abc"));
        assert_eq!(bearer("bearer jm_abc"), Some("jm_abc"));
        assert_eq!(bearer("BEARER   jm_abc "), Some("jm_abc"));
        assert_eq!(bearer("Basic dXNlcg=="), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearerjm_abc"), None);
        assert_eq!(bearer(""), None);
    }
}
