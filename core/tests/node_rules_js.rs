//! The browser reads the node's rules from `receiver-web/js/core/rules.js`, generated from
//! `ownstream_core::node::rules::js_module`: this fails while the checked-in file differs, so a
//! rule changed in the core cannot silently leave the tab behind. `OWNSTREAM_BLESS=1` rewrites it.

use ownstream_core::node::rules::js_module;
use std::path::PathBuf;

#[test]
fn the_tabs_rules_are_the_cores() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../receiver-web/js/core/rules.js");
    let want = js_module();
    if std::env::var_os("OWNSTREAM_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} differs from the core's rules: run `OWNSTREAM_BLESS=1 cargo test -p ownstream-core \
         --test node_rules_js` and commit it\n--- checked in\n{have}\n--- core\n{want}",
        path.display()
    );
}
