//! Kubernetes label selectors, in the text form `kubectl -l` and the API's
//! `labelSelector` parameter take: requirements joined by commas, each
//! `key`, `!key`, `key=value` (or `==`), `key!=value`, `key in (a,b)` or
//! `key notin (a,b)`.

use std::collections::BTreeMap;

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    test: Test,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Exists,
    Absent,
    In(Vec<String>),
    NotIn(Vec<String>),
}

impl Selector {
    /// Parses `text`; the error names what is wrong and where.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parser = Parser { text, at: 0 };
        let mut requirements = Vec::new();
        parser.skip_spaces();
        if parser.done() {
            return Ok(Self(requirements));
        }
        loop {
            requirements.push(parser.requirement()?);
            parser.skip_spaces();
            if parser.done() {
                return Ok(Self(requirements));
            }
            parser.expect(',')?;
        }
    }

    /// Whether `labels` satisfy every requirement.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|requirement| {
            let value = labels.get(&requirement.key);
            match &requirement.test {
                Test::Exists => value.is_some(),
                Test::Absent => value.is_none(),
                Test::In(values) => value.is_some_and(|value| values.contains(value)),
                Test::NotIn(values) => value.is_none_or(|value| !values.contains(value)),
            }
        })
    }
}

struct Parser<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Parser<'t> {
    fn rest(&self) -> &'t str {
        &self.text[self.at..]
    }

    fn done(&self) -> bool {
        self.rest().is_empty()
    }

    fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn error(&self, what: &str) -> String {
        format!(
            "label selector `{}`: {what} at position {}",
            self.text, self.at
        )
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_spaces();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: char) -> Result<(), String> {
        if self.eat(token.encode_utf8(&mut [0; 4])) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{token}`")))
        }
    }

    /// A key or value: the characters label keys and values are made of.
    fn word(&mut self) -> &'t str {
        self.skip_spaces();
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
            .unwrap_or(rest.len());
        self.at += end;
        &rest[..end]
    }

    fn key(&mut self) -> Result<String, String> {
        let key = self.word().to_owned();
        if key.is_empty() {
            return Err(self.error("expected a label key"));
        }
        Ok(key)
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.eat("!") {
            return Ok(Requirement {
                key: self.key()?,
                test: Test::Absent,
            });
        }
        let key = self.key()?;
        let test = if self.eat("!=") {
            Test::NotIn(vec![self.word().to_owned()])
        } else if self.eat("==") || self.eat("=") {
            Test::In(vec![self.word().to_owned()])
        } else if self.keyword("notin") {
            Test::NotIn(self.set()?)
        } else if self.keyword("in") {
            Test::In(self.set()?)
        } else {
            self.skip_spaces();
            if !self.done() && !self.rest().starts_with(',') {
                return Err(self.error("expected `=`, `==`, `!=`, `in`, `notin` or `,`"));
            }
            Test::Exists
        };
        Ok(Requirement { key, test })
    }

    /// `in` or `notin`, as a whole word followed by a space or `(`.
    fn keyword(&mut self, keyword: &str) -> bool {
        let start = self.at;
        self.skip_spaces();
        let rest = self.rest();
        if rest.starts_with(keyword)
            && rest[keyword.len()..].starts_with(|c: char| c == '(' || c.is_whitespace())
        {
            self.at += keyword.len();
            true
        } else {
            self.at = start;
            false
        }
    }

    fn set(&mut self) -> Result<Vec<String>, String> {
        self.expect('(')?;
        let mut values = Vec::new();
        loop {
            values.push(self.word().to_owned());
            if self.eat(")") {
                return Ok(values);
            }
            if !self.eat(",") {
                return Err(self.error("expected `,` or `)`"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn matches(selector: &str, pairs: &[(&str, &str)]) -> bool {
        Selector::parse(selector)
            .unwrap_or_else(|error| panic!("{error}"))
            .matches(&labels(pairs))
    }

    #[test]
    fn every_operator_selects_as_the_api_server_does() {
        let web = [("team", "web"), ("tier", "front")];
        assert!(matches("", &[]));
        assert!(matches("team", &web));
        assert!(!matches("!team", &web));
        assert!(matches("!owner", &web));
        assert!(matches("team=web", &web));
        assert!(matches("team == web", &web));
        assert!(!matches("team=db", &web));
        assert!(matches("team!=db", &web));
        // `!=` and `notin` select objects without the label too.
        assert!(matches("owner!=x", &web));
        assert!(matches("owner notin (x)", &web));
        assert!(matches("tier in (front, back)", &web));
        assert!(!matches("tier notin (front,back)", &web));
        assert!(!matches("owner in (x)", &web));
        assert!(matches("team=web,tier in (front),!legacy", &web));
        assert!(!matches("team=web,tier=back", &web));
        assert!(matches(
            "app.kubernetes.io/name=x",
            &[("app.kubernetes.io/name", "x")]
        ));
        // An empty value selects the empty value.
        assert!(matches("team=", &[("team", "")]));
        // `in` as a key, not an operator.
        assert!(matches("in=1", &[("in", "1")]));
    }

    #[test]
    fn malformed_selectors_say_what_is_wrong() {
        for (selector, expected) in [
            ("team=web,", "expected a label key"),
            ("=web", "expected a label key"),
            ("team in web", "expected `(`"),
            ("team in (a,b", "expected `,`"),
            ("team >= 3", "expected `=`"),
            ("team=web tier=db", "expected `,`"),
            ("!", "expected a label key"),
        ] {
            let error = Selector::parse(selector).expect_err(selector);
            assert!(error.contains(expected), "{selector}: {error}");
            assert!(error.contains(selector), "{error}");
        }
    }
}
