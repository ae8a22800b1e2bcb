//! One shared copy of each user and each scope, for all the keys that have
//! them.
//!
//! Scopes are shared as [`Access`] values: a scope with no policies. A key
//! with policies gets an `Access` of its own (its rate limiter's state is
//! its own), validated here all the same.
//!
//! A million keys typically belong to far fewer users and use a handful of
//! scopes. Each [`super::Entry`] holds an `Arc` to its user (the id as a
//! ready-made header value, so the proxy injects it with a reference-count
//! increment rather than an allocation) and to its scope, instead of its
//! own copies: 8 bytes per key instead of a string allocation each.
//!
//! The keyring keeps one [`Interner`] under its writer lock for the life of
//! the process, so that keys created later share too. Strings are validated
//! once, when first seen; a user or scope no key uses any more is dropped
//! by [`Interner::prune`].

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use http::HeaderValue;

use super::access::Access;
use super::policy::Policy;
use super::user::{UserId, UserIdError};
use crate::scope::{Scope, ScopeError};

/// A key's owner, shared by all the owner's keys.
pub(crate) struct User {
    /// The validated user id, as the identity header's value.
    header: HeaderValue,
}

impl User {
    fn new(id: &UserId) -> Self {
        // Validated to a header-safe alphabet.
        let header = HeaderValue::from_str(id.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        User { header }
    }

    /// The user id.
    #[inline]
    pub(crate) fn id(&self) -> &str {
        // Built from a validated ASCII id.
        std::str::from_utf8(self.header.as_bytes()).unwrap_or("")
    }

    /// The user id as a header value.
    #[inline]
    pub(crate) fn header(&self) -> &HeaderValue {
        &self.header
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User({})", self.id())
    }
}

/// What the interner can look up by text.
trait Named {
    fn name(&self) -> &str;
}

impl Named for User {
    fn name(&self) -> &str {
        self.id()
    }
}

impl Named for Access {
    fn name(&self) -> &str {
        self.scope().as_str()
    }
}

/// A shared value, hashed and compared by its text so that a set of them
/// can be searched with a `&str`.
struct Shared<T>(Arc<T>);

impl<T: Named> Borrow<str> for Shared<T> {
    fn borrow(&self) -> &str {
        self.0.name()
    }
}

impl<T: Named> Hash for Shared<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name().hash(state);
    }
}

impl<T: Named> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl<T: Named> Eq for Shared<T> {}

/// The shared users and scopes.
#[derive(Default)]
pub(crate) struct Interner {
    users: HashSet<Shared<User>>,
    /// Scopes without policies.
    scopes: HashSet<Shared<Access>>,
}

impl fmt::Debug for Interner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interner")
            .field("users", &self.users.len())
            .field("scopes", &self.scopes.len())
            .finish()
    }
}

impl Interner {
    /// The shared user for `id`, validating it if it is new.
    pub(crate) fn user(&mut self, id: &str) -> Result<Arc<User>, UserIdError> {
        if let Some(user) = self.users.get(id) {
            return Ok(user.0.clone());
        }
        Ok(self.add_user(&UserId::parse(id)?))
    }

    /// The shared user for an already validated id.
    pub(crate) fn user_of(&mut self, id: &UserId) -> Arc<User> {
        match self.users.get(id.as_str()) {
            Some(user) => user.0.clone(),
            None => self.add_user(id),
        }
    }

    fn add_user(&mut self, id: &UserId) -> Arc<User> {
        let user = Arc::new(User::new(id));
        self.users.insert(Shared(user.clone()));
        user
    }

    /// The access for a scope given as `text` (validated if it is new)
    /// and `policy`: shared when the policy is empty, the key's own if not.
    pub(crate) fn access(
        &mut self,
        text: &str,
        policy: &Policy,
    ) -> Result<Arc<Access>, ScopeError> {
        if !policy.is_empty() {
            return Ok(Arc::new(Access::with_policy(Scope::parse(text)?, policy)));
        }
        if let Some(access) = self.scopes.get(text) {
            return Ok(access.0.clone());
        }
        Ok(self.add_scope(Scope::parse(text)?))
    }

    /// [`Interner::access`] for an already validated scope.
    pub(crate) fn access_of(&mut self, scope: &Scope, policy: &Policy) -> Arc<Access> {
        if !policy.is_empty() {
            return Arc::new(Access::with_policy(scope.clone(), policy));
        }
        match self.scopes.get(scope.as_str()) {
            Some(shared) => shared.0.clone(),
            None => self.add_scope(scope.clone()),
        }
    }

    fn add_scope(&mut self, scope: Scope) -> Arc<Access> {
        let access = Arc::new(Access::scope_only(scope));
        self.scopes.insert(Shared(access.clone()));
        access
    }

    /// Forgets users and scopes that no entry holds any more (in any
    /// snapshot still alive). Called after revocations, off the request path.
    pub(crate) fn prune(&mut self) {
        self.users.retain(|user| Arc::strong_count(&user.0) > 1);
        self.scopes.retain(|scope| Arc::strong_count(&scope.0) > 1);
    }

    /// Number of distinct users held.
    #[cfg(test)]
    pub(crate) fn user_count(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_prunes() {
        let mut interner = Interner::default();
        let a = interner.user("alice").unwrap();
        let b = interner.user_of(&UserId::parse("alice").unwrap());
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.id(), "alice");
        assert_eq!(a.header(), "alice");
        assert!(interner.user("a b").is_err());
        let none = Policy::default();
        let s = interner.access("/api/", &none).unwrap();
        let t = interner.access_of(&Scope::parse("/api/").unwrap(), &none);
        assert!(Arc::ptr_eq(&s, &t));
        assert!(interner.access("api", &none).is_err());
        let limited = Policy {
            methods: Some(crate::keys::policy::Methods::parse(&["GET"]).unwrap()),
            ..Policy::default()
        };
        let own = interner.access("/api/", &limited).unwrap();
        assert!(!Arc::ptr_eq(&s, &own), "a key with policies has its own");
        assert!(own.limits().is_some());
        drop(b);
        interner.prune();
        assert_eq!(interner.user_count(), 1);
        drop(a);
        interner.prune();
        assert_eq!(interner.user_count(), 0);
    }
}
