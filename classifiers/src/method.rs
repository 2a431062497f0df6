//! Methods: the default kind of a request by its method, and the per-method index of the rules a
//! request can match.
//!
//! Methods are case-sensitive tokens (RFC 9110, section 9.1): `get` is not `GET`.

use lockstep_config::{MethodSet, RequestKind};

#[cfg(test)]
mod tests;

/// The kind of a request that no route rule decides: `GET`, `HEAD` and `OPTIONS` are reads; every
/// other method, including ones this crate has never heard of (`PROPFIND`, `PURGE`, `BREW`), is
/// logical, because a method nobody vouched for may change state.
pub fn default_kind(method: &str) -> RequestKind {
    match method {
        "GET" | "HEAD" | "OPTIONS" => RequestKind::Read,
        _ => RequestKind::Logical,
    }
}

/// For each method named by some rule, the indices of the rules that accept it, in config order;
/// for every other method, the indices of the `*` rules. Classification then never looks at a
/// rule whose method set excludes the request's method.
#[derive(Debug, Default)]
pub(crate) struct MethodIndex {
    /// Few entries in practice (the distinct methods the config names), so a linear scan beats
    /// hashing.
    named: Vec<(Box<str>, Vec<usize>)>,
    any: Vec<usize>,
}

impl MethodIndex {
    pub(crate) fn new<'a>(sets: impl IntoIterator<Item = &'a MethodSet>) -> Self {
        let sets: Vec<&MethodSet> = sets.into_iter().collect();
        let mut index = MethodIndex::default();
        for set in &sets {
            if let MethodSet::Only(methods) = set {
                for method in methods {
                    if !index.named.iter().any(|(m, _)| **m == **method) {
                        index.named.push((method.as_str().into(), Vec::new()));
                    }
                }
            }
        }
        for (i, set) in sets.iter().enumerate() {
            match set {
                MethodSet::Any => {
                    index.any.push(i);
                    for (_, rules) in &mut index.named {
                        rules.push(i);
                    }
                }
                MethodSet::Only(methods) => {
                    for (m, rules) in &mut index.named {
                        if methods.iter().any(|x| **x == **m) {
                            rules.push(i);
                        }
                    }
                }
            }
        }
        index
    }

    /// The rules that accept `method`, in config order.
    pub(crate) fn candidates(&self, method: &str) -> &[usize] {
        self.named
            .iter()
            .find(|(m, _)| **m == *method)
            .map_or(&self.any, |(_, rules)| rules)
    }
}
