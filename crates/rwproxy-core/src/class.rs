//! Request classification: read, write or passthrough, decided once per request.

use globset::{Glob, GlobSet, GlobSetBuilder};
use http::Method;

/// What kind of request this is, for routing and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestClass {
    /// A read method on a path that is not `always_forward`: may be served by a fresh replica.
    Read,
    /// Any other method, or an `always_forward` path: only the primary's app may serve it.
    Write,
    /// A `passthrough` path: always served by the local app, whatever the method.
    Passthrough,
}

impl RequestClass {
    /// The `class` metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestClass::Read => "read",
            RequestClass::Write => "write",
            RequestClass::Passthrough => "passthrough",
        }
    }
}

/// A bad glob in the routing configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid glob {pattern:?}: {reason}")]
pub struct ClassifierError {
    /// The offending pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Classifies requests by method and path.
///
/// Globs are anchored to the whole path (query excluded); `*` matches any run of characters,
/// `/` included, as in the LiteFS proxy. `?`, `[abc]` and `{a,b}` work as in shell globs.
/// Passthrough is checked before `always_forward`.
#[derive(Clone, Debug)]
pub struct Classifier {
    read_methods: Vec<Method>,
    passthrough: GlobSet,
    always_forward: GlobSet,
}

impl Classifier {
    /// Builds a classifier; fails on the first invalid glob.
    pub fn new(
        read_methods: Vec<Method>,
        passthrough: &[String],
        always_forward: &[String],
    ) -> Result<Self, ClassifierError> {
        Ok(Classifier {
            read_methods,
            passthrough: build_globs(passthrough)?,
            always_forward: build_globs(always_forward)?,
        })
    }

    /// The class of a request with this method and path.
    pub fn classify(&self, method: &Method, path: &str) -> RequestClass {
        if !self.passthrough.is_empty() && self.passthrough.is_match(path) {
            return RequestClass::Passthrough;
        }
        if !self.always_forward.is_empty() && self.always_forward.is_match(path) {
            return RequestClass::Write;
        }
        if self.read_methods.iter().any(|m| m == method) {
            RequestClass::Read
        } else {
            RequestClass::Write
        }
    }

    /// True when `method` is configured as a read method.
    pub fn is_read_method(&self, method: &Method) -> bool {
        self.read_methods.iter().any(|m| m == method)
    }
}

/// Compiles one glob the way the classifier uses it; used by config validation too.
pub fn compile_glob(pattern: &str) -> Result<Glob, ClassifierError> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map_err(|e| ClassifierError {
            pattern: pattern.to_owned(),
            reason: e.kind().to_string(),
        })
}

fn build_globs(patterns: &[String]) -> Result<GlobSet, ClassifierError> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(compile_glob(p)?);
    }
    builder.build().map_err(|e| ClassifierError {
        pattern: patterns.join(", "),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier(pass: &[&str], fwd: &[&str]) -> Classifier {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Classifier::new(
            vec![Method::GET, Method::HEAD, Method::OPTIONS],
            &s(pass),
            &s(fwd),
        )
        .expect("valid")
    }

    #[test]
    fn methods_decide_by_default() {
        let c = classifier(&[], &[]);
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(c.classify(&m, "/x"), RequestClass::Read, "{m}");
        }
        for m in [
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::from_bytes(b"PURGE").expect("m"),
        ] {
            assert_eq!(c.classify(&m, "/x"), RequestClass::Write, "{m}");
        }
    }

    #[test]
    fn globs_are_anchored_and_star_crosses_slashes() {
        let c = classifier(&["/static/*", "/assets/*.css"], &["/admin/*", "/login"]);
        assert_eq!(
            c.classify(&Method::POST, "/static/a/b.js"),
            RequestClass::Passthrough
        );
        assert_eq!(
            c.classify(&Method::POST, "/assets/x/y.css"),
            RequestClass::Passthrough
        );
        assert_eq!(c.classify(&Method::GET, "/assets/y.js"), RequestClass::Read);
        assert_eq!(
            c.classify(&Method::GET, "/admin/users"),
            RequestClass::Write
        );
        assert_eq!(c.classify(&Method::GET, "/login"), RequestClass::Write);
        assert_eq!(c.classify(&Method::GET, "/login/more"), RequestClass::Read);
        assert_eq!(c.classify(&Method::GET, "/x/static/a"), RequestClass::Read);
    }

    #[test]
    fn class_names_and_read_methods() {
        assert_eq!(RequestClass::Read.as_str(), "read");
        assert_eq!(RequestClass::Write.as_str(), "write");
        assert_eq!(RequestClass::Passthrough.as_str(), "passthrough");
        let c = classifier(&[], &[]);
        assert!(c.is_read_method(&Method::GET));
        assert!(!c.is_read_method(&Method::POST));
    }

    #[test]
    fn passthrough_wins_over_always_forward() {
        let c = classifier(&["/both/*"], &["/both/*"]);
        assert_eq!(
            c.classify(&Method::POST, "/both/x"),
            RequestClass::Passthrough
        );
    }

    #[test]
    fn invalid_globs_are_named() {
        let err = Classifier::new(vec![], &["/a/[".to_string()], &[]).expect_err("invalid");
        assert_eq!(err.pattern, "/a/[");
    }
}
