//! Property tests over the request parser, the part of the server that reads untrusted bytes:
//! whatever arrives, it answers with a request or a 400/422, never a panic, and a request it
//! accepts keeps the documents and their order.
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

use proptest::prelude::*;
use serde_json::{Value, json};
use tinyrank_serve::api::{Api, Limits, parse};

const APIS: [Api; 3] = [
    Api::Cohere { version: 1 },
    Api::Cohere { version: 2 },
    Api::Tei,
];
const LIMITS: Limits = Limits {
    max_documents: 50,
    max_body_bytes: 1 << 20,
};

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|x| json!(x)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names that the parser reads, mixed with others.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("query".to_string()),
        Just("documents".to_string()),
        Just("texts".to_string()),
        Just("text".to_string()),
        Just("top_n".to_string()),
        Just("return_documents".to_string()),
        Just("truncate".to_string()),
        Just("raw_scores".to_string()),
        Just("truncation_direction".to_string()),
        "[a-z_]{1,8}",
    ]
}

fn outcome_is_sound(api: Api, body: &[u8]) {
    match parse(api, body, &LIMITS) {
        Ok(request) => {
            assert!(!request.query.trim().is_empty());
            assert!(!request.documents.is_empty());
            assert!(request.documents.len() <= LIMITS.max_documents);
            assert!(request.documents.iter().all(|d| !d.trim().is_empty()));
            assert_ne!(request.top_n, Some(0));
        }
        Err(e) => {
            assert!(matches!(e.status.as_u16(), 400 | 422), "{e:?}");
            assert!(!e.message.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_or_parsed(body in prop::collection::vec(any::<u8>(), 0..256)) {
        for api in APIS {
            outcome_is_sound(api, &body);
        }
    }

    #[test]
    fn arbitrary_json_is_refused_or_parsed(fields in prop::collection::btree_map(field(), any_json(), 0..8)) {
        let body = Value::Object(fields.into_iter().collect()).to_string();
        for api in APIS {
            outcome_is_sound(api, body.as_bytes());
        }
    }

    #[test]
    fn well_formed_requests_keep_their_documents(
        query in "[a-z]{1,10}( [a-z]{1,10}){0,4}",
        documents in prop::collection::vec("[a-z]{1,10}( [a-z]{0,10}){0,8}", 1..20),
        top_n in prop::option::of(1usize..30),
        as_objects in any::<bool>(),
    ) {
        let listed: Vec<Value> = documents
            .iter()
            .map(|d| if as_objects { json!({ "text": d }) } else { json!(d) })
            .collect();
        let body = json!({"query": query, "documents": listed, "top_n": top_n}).to_string();
        let request = parse(Api::Cohere { version: 2 }, body.as_bytes(), &LIMITS).unwrap();
        prop_assert_eq!(&request.documents, &documents);
        prop_assert_eq!(request.top_n, top_n);
        let body = json!({"query": query, "texts": documents}).to_string();
        let request = parse(Api::Tei, body.as_bytes(), &LIMITS).unwrap();
        prop_assert_eq!(request.documents, documents);
    }
}
