//! Every shipped `ebb up` example is a valid configuration.

#[test]
fn shipped_local_examples_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/local");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let c = ebb_local::config::Config::from_yaml(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!c.services.is_empty());
        n += 1;
    }
    assert!(n >= 2);
}

#[test]
fn sh_c_lines_keep_their_script() {
    let c = ebb_local::config::Config::from_yaml(
        "services:\n- name: m\n  command: sh -c \"PORT={port} exec server\"\n  listen: 127.0.0.1:9\n  policy: {maxReplicas: 1, concurrency: {targetPerReplica: 1}}\n",
    )
    .unwrap();
    assert_eq!(
        c.services[0].command,
        ["sh", "-c", "PORT={port} exec server"]
    );
}
