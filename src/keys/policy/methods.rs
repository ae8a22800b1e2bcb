//! The methods a key may use, as a set of bits.
//!
//! Only the methods of RFC 9110 and `PATCH` can be named: a list is
//! checked when it is set, so a typo (`GTE`) is a 400 rather than a key
//! that silently admits nothing. A request with any other method (an
//! extension method) is outside every list. Matching is exact: `GET` does
//! not imply `HEAD`, unlike nginx's `limit_except`; what is listed is what
//! is allowed, and the admin API warns when `GET` comes without `HEAD`.

use std::fmt;

use http::Method;

use super::PolicyError;

/// The nameable methods, in their bit order.
const KNOWN: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
];

/// A non-empty set of methods.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Methods(u16);

impl Methods {
    /// Parses a list of method names (any case; `CONNECT` cannot be
    /// proxied and is refused like an unknown name).
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, PolicyError> {
        if names.is_empty() {
            return Err(PolicyError::NoMethods);
        }
        let mut bits = 0u16;
        for (index, name) in names.iter().enumerate() {
            let name = name.as_ref().trim();
            let bit = KNOWN
                .iter()
                .position(|known| known.eq_ignore_ascii_case(name))
                .ok_or_else(|| PolicyError::Method {
                    index,
                    reason: format!("{name:?} is not one of {}", KNOWN.join(", ")),
                })?;
            bits |= 1 << bit;
        }
        Ok(Methods(bits))
    }

    /// The set stored as `bits` (0 is no set at all).
    pub(crate) fn from_bits(bits: u16) -> Result<Option<Self>, PolicyError> {
        match bits {
            0 => Ok(None),
            bits if bits >> KNOWN.len() == 0 => Ok(Some(Methods(bits))),
            _ => Err(PolicyError::Method {
                index: 0,
                reason: "unknown method bit".to_owned(),
            }),
        }
    }

    /// The stored form.
    pub(crate) fn bits(self) -> u16 {
        self.0
    }

    /// Whether `method` is in the set. `http::Method` keeps a standard
    /// method as a tag, so this is a few integer comparisons.
    #[inline]
    pub fn allows(self, method: &Method) -> bool {
        let bit = match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::PATCH => 5,
            Method::OPTIONS => 6,
            Method::TRACE => 7,
            _ => return false,
        };
        self.0 & (1 << bit) != 0
    }

    /// The names in the set, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        KNOWN
            .into_iter()
            .enumerate()
            .filter(move |(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, name)| name)
    }

    /// Whether the set has `GET` but not `HEAD` (worth a warning: clients
    /// and monitors send `HEAD` where they would `GET`).
    pub fn get_without_head(self) -> bool {
        self.allows(&Method::GET) && !self.allows(&Method::HEAD)
    }
}

impl fmt::Debug for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_exact() {
        let read = Methods::parse(&["get", "HEAD"]).unwrap();
        assert!(read.allows(&Method::GET));
        assert!(read.allows(&Method::HEAD));
        assert!(!read.allows(&Method::POST));
        assert!(!read.allows(&Method::from_bytes(b"PROPFIND").unwrap()));
        assert_eq!(read.names().collect::<Vec<_>>(), ["GET", "HEAD"]);
        let get = Methods::parse(&["GET"]).unwrap();
        assert!(!get.allows(&Method::HEAD), "GET does not imply HEAD");
        assert!(get.get_without_head());
        assert_eq!(Methods::from_bits(read.bits()), Ok(Some(read)));
        assert_eq!(Methods::from_bits(0), Ok(None));
        assert!(Methods::from_bits(1 << 12).is_err());
    }

    #[test]
    fn unknown_and_empty_lists_are_refused() {
        assert_eq!(
            Methods::parse(&["GET", "FETCH"]).unwrap_err().to_string(),
            "methods[1]: \"FETCH\" is not one of GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE"
        );
        assert!(Methods::parse(&["CONNECT"]).is_err());
        assert_eq!(Methods::parse::<&str>(&[]), Err(PolicyError::NoMethods));
    }
}
