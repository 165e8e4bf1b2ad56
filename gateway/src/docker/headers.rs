//! Request headers read as the engine reads them.
//!
//! The engine is a Go `net/http` server: it sees header values as bytes,
//! and reads a media type with `mime.ParseMediaType`, which lowercases the
//! value with Unicode rules before it checks it — so `applİcation/json`
//! (a dotted capital I) is `application/json` to the engine, and a form
//! body with such a content type overrides the URL's parameters. Rather
//! than model every byte Go folds, the proxy refuses header values that are
//! not plain text (visible ASCII, space and tab), which no docker client
//! sends, and reads the media type of what remains the way Go does.

use hyper::header::{CONTENT_TYPE, HeaderMap};

/// Why the headers are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A value with bytes outside visible ASCII.
    #[error("header `{0}` is not plain text, and the engine would read it its own way")]
    NotText(String),
    /// More than one `Content-Type`.
    #[error("more than one Content-Type header")]
    TwoContentTypes,
}

/// Checks that every header is plain text, and returns the media type of
/// the body (lowercase, without parameters), empty when none is given.
pub fn media_type(headers: &HeaderMap) -> Result<String, HeaderError> {
    for (name, value) in headers {
        if value
            .as_bytes()
            .iter()
            .any(|&byte| !(byte == b'\t' || (b' '..=b'~').contains(&byte)))
        {
            return Err(HeaderError::NotText(name.as_str().to_owned()));
        }
    }
    let mut types = headers.get_all(CONTENT_TYPE).iter();
    let Some(content_type) = types.next() else {
        return Ok(String::new());
    };
    if types.next().is_some() {
        return Err(HeaderError::TwoContentTypes);
    }
    // Checked as text above.
    let text = content_type.to_str().unwrap_or_default();
    // `mime.ParseMediaType`: up to the first `;`, lowercased, trimmed.
    let base = text.split(';').next().unwrap_or_default();
    Ok(base.trim_matches([' ', '\t']).to_ascii_lowercase())
}

/// Whether the engine parses a body of this media type as a form, whose
/// fields it reads as parameters over the URL's (`Request.ParseForm`; the
/// engine's `ParseMultipartForm` is never called, but the proxy does not
/// wager on it).
pub fn is_form(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/x-www-form-urlencoded" | "multipart/form-data"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                *name,
                HeaderValue::from_bytes(value).expect("a header value"),
            );
        }
        map
    }

    #[test]
    fn a_media_type_is_read_as_go_reads_it() {
        for (value, expected) in [
            (&b"application/json"[..], "application/json"),
            (b"Application/JSON; charset=utf-8", "application/json"),
            (
                b" application/x-www-form-urlencoded\t; x=1",
                "application/x-www-form-urlencoded",
            ),
            (b"", ""),
        ] {
            assert_eq!(
                media_type(&headers(&[("content-type", value)])),
                Ok(expected.to_owned())
            );
        }
        assert_eq!(media_type(&HeaderMap::new()), Ok(String::new()));
        assert!(is_form("application/x-www-form-urlencoded"));
        assert!(is_form("multipart/form-data"));
    }

    #[test]
    fn values_that_are_not_text_are_refused() {
        // `İ` folds to `i` in Go's lowercasing; so does the Kelvin sign to
        // `k`, and a no-break space is trimmed as a space.
        for value in [
            "applİcation/x-www-form-urlencoded",
            "application/x-www-form-urlencoded\u{a0}",
            "multipart/form-data; boundary=\u{212a}",
        ] {
            assert_eq!(
                media_type(&headers(&[("content-type", value.as_bytes())])),
                Err(HeaderError::NotText("content-type".into()))
            );
        }
        assert_eq!(
            media_type(&headers(&[("x-registry-auth", b"\xff")])),
            Err(HeaderError::NotText("x-registry-auth".into()))
        );
        assert_eq!(
            media_type(&headers(&[
                ("content-type", b"application/json"),
                ("content-type", b"application/x-www-form-urlencoded")
            ])),
            Err(HeaderError::TwoContentTypes)
        );
    }
}
