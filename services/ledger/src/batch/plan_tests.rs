use std::collections::HashMap;

use super::plan::{Head, next_link};
use billing_domain::hash::GENESIS_HASH;

#[test]
fn the_chain_continues_from_the_locked_head() {
    let head = |seq, hash: &str| Head {
        seq,
        hash: hash.to_string(),
    };
    let chain = HashMap::from([("claire".to_string(), head(4, "h4"))]);
    assert_eq!(next_link(&chain, "claire"), (5, "h4".to_string()));
    assert_eq!(next_link(&chain, "kenji"), (1, GENESIS_HASH.to_string()));
}
