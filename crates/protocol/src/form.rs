//! The one `application/x-www-form-urlencoded` decoder: authorization query strings (server and
//! browser SDK) and form bodies (token, introspection and revocation endpoints) go through it, so
//! the places a parameter can arrive from cannot disagree on what it says.
//!
//! Rules (RFC 6749 §3.1, §3.2): `+` is a space and `%XX` a byte; the result must be UTF-8. A
//! parameter sent without a value is treated as omitted — but still counts as a repeat: `a=&a=x`
//! is refused, since two copies of one parameter mean someone is splicing parameters. A
//! parameter may appear at most once,
//! except the ones the caller reads with [`Form::all`] (`resource`, RFC 8707). Unknown parameters
//! are ignored. Values are decoded when read, so a bad encoding is reported under the name of the
//! parameter that carries it.

use crate::authorize::{ParamError, ParamProblem, percent_decode};

/// Decoded parameter names with their still-encoded values, in arrival order.
#[derive(Clone, Debug, Default)]
pub struct Form<'a> {
    pairs: Vec<(String, &'a str)>,
}

impl<'a> Form<'a> {
    /// Split `text` into parameters. `context` names the whole input in the error for a
    /// parameter name that does not decode (`"query"` for an authorization URL, `"body"` for a
    /// form body).
    pub fn parse(text: &'a str, context: &'static str) -> Result<Form<'a>, ParamError> {
        let mut pairs = Vec::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key =
                percent_decode(k).ok_or(ParamError::new(context, ParamProblem::BadEncoding))?;
            pairs.push((key, v));
        }
        Ok(Form { pairs })
    }

    /// The value of a parameter that may appear once; `None` when absent (or sent empty).
    pub fn one(&self, name: &'static str) -> Result<Option<String>, ParamError> {
        let mut found = self.pairs.iter().filter(|(k, _)| k == name);
        let Some((_, raw)) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(ParamError::new(name, ParamProblem::Repeated));
        }
        if raw.is_empty() {
            return Ok(None);
        }
        percent_decode(raw)
            .map(Some)
            .ok_or(ParamError::new(name, ParamProblem::BadEncoding))
    }

    /// Every value of a repeatable parameter, in order (empty ones dropped).
    pub fn all(&self, name: &'static str) -> Result<Vec<String>, ParamError> {
        self.pairs
            .iter()
            .filter(|(k, raw)| k == name && !raw.is_empty())
            .map(|(_, raw)| {
                percent_decode(raw).ok_or(ParamError::new(name, ParamProblem::BadEncoding))
            })
            .collect()
    }

    /// The first of `names` that appears more than once: an endpoint with a fixed set of
    /// single-valued parameters refuses a repeat of any of them, read or not.
    pub fn first_repeated(&self, names: &[&'static str]) -> Option<&'static str> {
        names
            .iter()
            .find(|n| self.pairs.iter().filter(|(k, _)| k == *n).count() > 1)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_omitted_and_plus_is_space() {
        let f = Form::parse("a=&b=x+y&&c=%41&d", "body").unwrap();
        assert_eq!(f.one("d").unwrap(), None);
        assert_eq!(f.one("a").unwrap(), None);
        assert_eq!(f.one("b").unwrap().as_deref(), Some("x y"));
        assert_eq!(f.one("c").unwrap().as_deref(), Some("A"));
    }

    #[test]
    fn repeats_are_refused_by_name_unless_read_as_many() {
        let f = Form::parse("scope=a&scope=b&resource=r1&resource=&resource=r2", "body").unwrap();
        let e = f.one("scope").unwrap_err();
        assert_eq!(e.param, "scope");
        assert_eq!(e.problem, ParamProblem::Repeated);
        assert_eq!(f.all("resource").unwrap(), vec!["r1", "r2"]);
        assert_eq!(f.first_repeated(&["resource", "scope"]), Some("resource"));
        let f = Form::parse("code=&code=x", "body").unwrap();
        assert_eq!(f.one("code").unwrap_err().problem, ParamProblem::Repeated);
    }

    #[test]
    fn a_bad_value_encoding_names_its_parameter() {
        let f = Form::parse("code=%ZZ&x=%FF", "body").unwrap();
        assert_eq!(f.one("code").unwrap_err().param, "code");
        assert_eq!(f.one("x").unwrap_err().problem, ParamProblem::BadEncoding);
        assert_eq!(Form::parse("%ZZ=1", "query").unwrap_err().param, "query");
    }
}
