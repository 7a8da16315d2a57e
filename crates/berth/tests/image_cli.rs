//! End-to-end: the real `berth image` binary builds a busybox image into a
//! temporary store, and the real skopeo reads what it exports. skopeo and
//! busybox-static are prerequisites (scripts/lib.sh installs them): the
//! test fails, not skips, without them.

#![allow(clippy::unwrap_used, missing_docs)]

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output};

mod common;

fn berth(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("image")
        .args(args)
        .env("BERTH_IMAGE_STORE", store)
        .output()
        .unwrap()
}

/// Runs `berth image ARGS`, asserts success, returns stdout.
fn ok(store: &Path, args: &[&str]) -> String {
    let out = berth(store, args);
    assert!(
        out.status.success(),
        "berth image {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `berth image ARGS`, asserts failure, returns stderr.
fn fails(store: &Path, args: &[&str]) -> String {
    let out = berth(store, args);
    assert!(!out.status.success(), "berth image {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

fn skopeo(args: &[&str]) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is required for this test (apt-get install skopeo; scripts/lib.sh does)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn busybox_root(dir: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is required for this test (apt-get install busybox-static; scripts/lib.sh does)"
    );
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    symlink("busybox", dir.join("bin/sh")).unwrap();
}

const HTTPD: &[&str] = &[
    "--entrypoint",
    "/bin/busybox",
    "--cmd",
    r#"["httpd","-f","-p","8080"]"#,
    "--expose",
    "8080",
];

fn build(store: &Path, tag: &str, root: &Path) -> String {
    let mut args = vec!["build", "-t", tag, "--from-dir", root.to_str().unwrap()];
    args.extend_from_slice(HTTPD);
    let digest = ok(store, &args).trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    digest
}

#[test]
fn builds_lists_inspects_and_exports_for_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    busybox_root(&root);
    let store = tmp.path().join("store");

    let digest = build(&store, "web:v1", &root);
    // Reproducible: again in the same store, and in a fresh one.
    assert_eq!(build(&store, "web:v1", &root), digest);
    assert_eq!(build(&tmp.path().join("store2"), "web:v1", &root), digest);
    // Touching a file does not change the digest; changing content does.
    let f = std::fs::File::options()
        .append(true)
        .open(root.join("bin/busybox"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    drop(f);
    assert_eq!(build(&store, "web:v1", &root), digest);
    std::fs::write(root.join("motd"), "hello\n").unwrap();
    let changed = build(&store, "web:v2", &root);
    assert_ne!(changed, digest);

    let ls = ok(&store, &["ls"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert!(lines[0].starts_with("NAME:TAG"), "{ls}");
    let short = &digest["sha256:".len().."sha256:".len() + 12];
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("web:v1 ") && l.contains(short)),
        "{ls}"
    );
    assert!(lines.iter().any(|l| l.starts_with("web:v2 ")), "{ls}");

    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&store, &["inspect", "web:v1"])).unwrap();
    assert_eq!(inspect["digest"], digest.as_str());
    let rc = &inspect["config"]["config"];
    assert_eq!(rc["Entrypoint"], serde_json::json!(["/bin/busybox"]));
    assert_eq!(rc["Cmd"], serde_json::json!(["httpd", "-f", "-p", "8080"]));
    assert!(rc["ExposedPorts"].get("8080/tcp").is_some());
    assert_eq!(
        inspect["manifest"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // By digest too.
    let by_digest: serde_json::Value =
        serde_json::from_str(&ok(&store, &["inspect", &digest])).unwrap();
    assert_eq!(by_digest["digest"], digest.as_str());

    // Export; skopeo reads it and copies it.
    let out = tmp.path().join("out");
    assert_eq!(
        ok(&store, &["export", "web:v1", out.to_str().unwrap()]).trim(),
        digest
    );
    let mut exported: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    exported.sort();
    assert_eq!(exported, ["blobs", "index.json", "oci-layout"]);
    let out_ref = format!("oci:{}:web:v1", out.display());
    let info = skopeo(&["inspect", &out_ref]);
    assert_eq!(info["Digest"], digest.as_str());
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(info["Architecture"], arch);
    let config = skopeo(&["inspect", "--config", &out_ref]);
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/busybox"])
    );
    ok(
        &store,
        &["export", "web:v1", out.to_str().unwrap(), "--ref", "v1"],
    );
    let copied = tmp.path().join("copied");
    skopeo(&[
        "copy",
        &format!("oci:{}:v1", out.display()),
        &format!("oci:{}:c1", copied.display()),
    ]);
    assert_eq!(
        skopeo(&["inspect", &format!("oci:{}:c1", copied.display())])["Digest"],
        digest.as_str()
    );

    // Import what skopeo wrote, and build on top of it.
    let imported = ok(
        &store,
        &[
            "import",
            &format!("{}:c1", copied.display()),
            "-t",
            "base:1",
        ],
    );
    assert_eq!(imported.trim(), digest);
    let extra = tmp.path().join("index.html");
    std::fs::write(&extra, "<h1>hi</h1>\n").unwrap();
    let file_arg = format!("{}:/www/index.html", extra.display());
    let layered = ok(
        &store,
        &[
            "build",
            "-t",
            "site:1",
            "--base",
            "base:1",
            "--file",
            &file_arg,
            "--env",
            "A=1",
            "--workdir",
            "/www",
        ],
    );
    let site: serde_json::Value =
        serde_json::from_str(&ok(&store, &["inspect", "site:1"])).unwrap();
    assert_eq!(site["digest"], layered.trim());
    assert_eq!(site["manifest"]["layers"].as_array().unwrap().len(), 2);
    assert_eq!(
        site["manifest"]["layers"][0],
        inspect["manifest"]["layers"][0]
    );
    assert_eq!(site["config"]["config"]["Env"], serde_json::json!(["A=1"]));
    assert_eq!(site["config"]["config"]["WorkingDir"], "/www");
    assert_eq!(
        site["config"]["config"]["Entrypoint"],
        serde_json::json!(["/bin/busybox"])
    );
    let site_out = tmp.path().join("site-out");
    ok(&store, &["export", "site:1", site_out.to_str().unwrap()]);
    skopeo(&["inspect", &format!("oci:{}:site:1", site_out.display())]);

    // Remove, and the name is gone.
    assert_eq!(ok(&store, &["rm", "web:v2"]).trim(), "removed web:v2");
    assert!(!ok(&store, &["ls"]).contains("web:v2"));
    let err = fails(&store, &["inspect", "web:v2"]);
    assert!(err.contains("no image web:v2"), "{err}");
    let pruned = ok(&store, &["prune"]);
    assert!(pruned.starts_with("deleted "), "{pruned}");
    ok(&store, &["inspect", "web:v1"]);
}

#[test]
fn pushes_to_berths_registry_and_skopeo_pulls_the_same_digest() {
    let b = common::Berth::start();
    let registry = b.var("BERTH_REGISTRY");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let root = tmp.path().join("root");
    busybox_root(&root);
    let mut args = vec![
        "build",
        "-t",
        "web:v1",
        "--from-dir",
        root.to_str().unwrap(),
    ];
    args.extend_from_slice(HTTPD);
    let digest = ok(&store, &args).trim().to_string();

    // Without credentials the registry refuses.
    let dest = format!("{registry}/team/web:v1");
    let err = fails(&store, &["push", "web:v1", &dest]);
    assert!(
        err.to_lowercase().contains("unauthorized") || err.contains("401"),
        "{err}"
    );

    // With the token `berth registry password` prints (user AWS), it lands.
    let token = b.cli(&["registry", "password"]);
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "image",
            "push",
            "web:v1",
            &dest,
            "--username",
            "AWS",
            "--password-stdin",
        ])
        .env("BERTH_IMAGE_STORE", &store)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(token.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&digest),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // skopeo, an independent client, pulls it back with the same digest.
    let creds = format!("AWS:{}", token.trim());
    let inspected = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{dest}"),
    ]);
    assert_eq!(inspected["Digest"], digest.as_str());
    let pulled = tmp.path().join("pulled");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("docker://{dest}"),
        &format!("oci:{}:v1", pulled.display()),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pulled.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());

    // skopeo pushes the berth-built image (exported as an OCI layout), and an
    // OCI layout skopeo wrote itself; both arrive with the same digest.
    let exported = tmp.path().join("exported");
    ok(
        &store,
        &[
            "export",
            "web:v1",
            exported.to_str().unwrap(),
            "--ref",
            "v1",
        ],
    );
    let skopeo_made = tmp.path().join("skopeo-made");
    skopeo(&[
        "copy",
        &format!("oci:{}:v1", exported.display()),
        &format!("oci:{}:v1", skopeo_made.display()),
    ]);
    for (layout, repo) in [
        (&exported, "team/by-skopeo"),
        (&skopeo_made, "team/skopeo-layout"),
    ] {
        let dest = format!("docker://{registry}/{repo}:v1");
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("oci:{}:v1", layout.display()),
            &dest,
        ]);
        let inspected = skopeo(&["inspect", "--tls-verify=false", "--creds", &creds, &dest]);
        assert_eq!(inspected["Digest"], digest.as_str(), "{repo}");
    }
}

#[test]
fn explains_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let err = fails(&store, &["inspect", "web"]);
    assert!(err.contains("no image store"), "{err}");
    // A missing store lists nothing.
    assert_eq!(ok(&store, &["ls"]).lines().count(), 1);
    let err = fails(&store, &["build", "-t", "web"]);
    assert!(err.contains("nothing to build"), "{err}");
    let missing = tmp.path().join("missing");
    let err = fails(
        &store,
        &[
            "build",
            "-t",
            "web",
            "--from-dir",
            missing.to_str().unwrap(),
        ],
    );
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    let err = fails(
        &store,
        &[
            "build",
            "-t",
            "web",
            "--from-dir",
            tmp.path().to_str().unwrap(),
            "--entrypoint",
            "[not json",
        ],
    );
    assert!(err.contains("--entrypoint"), "{err}");
    let err = fails(&store, &["build", "-t", "Web", "--from-dir", "."]);
    assert!(err.contains("not valid"), "{err}");
    let err = fails(&store, &["inspect", "web"]);
    assert!(err.contains("no image web:latest in the store"), "{err}");
}
