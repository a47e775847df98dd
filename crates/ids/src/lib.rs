//! One macro for Siaga's string identifiers, so a Call-ID cannot be passed where a tag is
//! expected, nor a route name where a menu name is, and every such type behaves alike.
//!
//! ```
//! siaga_ids::string_id! {
//!     /// The name of a route.
//!     pub struct RouteId(String);
//! }
//! let route = RouteId::from("north");
//! assert_eq!(route, RouteId::new(String::from("north")));
//! assert_eq!(route.as_str(), "north");
//! assert_eq!(route.to_string(), "north");
//! ```
//!
//! No dependencies: a type that also needs serde says so in its own attributes, which the
//! macro passes through (`#[derive(Serialize)] #[serde(transparent)]`, in that order).

/// Declares a string newtype: `Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash`, plus
/// `new`, `as_str`, `Display` (the text as is) and `From<&str>`. Attributes written before
/// the struct (docs, more derives and their helpers) are kept; the field's visibility is
/// the caller's choice (`pub String` to let code build and read it directly).
#[macro_export]
macro_rules! string_id {
    ($(#[$attr:meta])* $vis:vis struct $name:ident($field_vis:vis String);) => {
        $(#[$attr])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis struct $name($field_vis ::std::string::String);

        impl $name {
            /// Wraps any text; whether it is a valid name is checked where the text is read.
            pub fn new(text: impl ::std::convert::Into<::std::string::String>) -> Self {
                Self(text.into())
            }

            /// The text as received or written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::convert::From<&str> for $name {
            fn from(text: &str) -> Self {
                Self(text.to_owned())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    string_id! {
        /// Open field, as the engine's SIP ids have.
        pub struct Open(pub String);
    }

    string_id! {
        /// Closed field, as the dial plan's names have.
        #[derive(Default)]
        pub(crate) struct Closed(String);
    }

    #[test]
    fn every_way_in_gives_the_same_value_and_text() {
        let a = Open::from("abc@host");
        assert_eq!(a, Open("abc@host".to_owned()));
        assert_eq!(a, Open::new("abc@host"));
        assert_eq!(a.as_str(), "abc@host");
        assert_eq!(a.to_string(), "abc@host");
        assert_eq!(format!("{a:?}"), "Open(\"abc@host\")");
    }

    #[test]
    fn values_order_by_their_text_and_extra_derives_apply() {
        let set: BTreeSet<Closed> = ["b", "a", "c", "a"].into_iter().map(Closed::from).collect();
        let texts: Vec<&str> = set.iter().map(Closed::as_str).collect();
        assert_eq!(texts, ["a", "b", "c"]);
        assert_eq!(Closed::default(), Closed::new(""));
    }
}
