//! The deployment files are checked, not just shipped: the systemd unit by
//! `systemd-analyze verify`, the Dockerfile by a structural lint (no daemon
//! here to build it), the IAM policy against least privilege.

use std::collections::BTreeSet;
use std::process::Command;

use confab_tests::paths;

fn read(path: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(paths::workspace_root().join(path))?)
}

#[test]
fn the_systemd_unit_verifies() -> anyhow::Result<()> {
    let unit = read("server/deploy/confab-proxy.service")?;
    // Verified against the binary built here, as installed it would be.
    let binary = paths::binary("confab-proxy")?;
    let unit = unit.replace("/usr/local/bin/confab-proxy", &binary.display().to_string());
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("confab-proxy.service");
    std::fs::write(&path, &unit)?;
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Complaints about this machine's own units are not ours.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("confab-proxy.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
    for needed in [
        "User=confab",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "EnvironmentFile=/etc/confab/proxy.env",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.contains(needed), "{needed}");
    }
    Ok(())
}

/// Dockerfile instructions, continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (word, rest) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((word.to_owned(), rest.trim().to_owned()));
        current.clear();
    }
    out
}

#[test]
fn the_dockerfile_builds_the_proxy_and_runs_it_unprivileged() -> anyhow::Result<()> {
    let text = read("server/deploy/Dockerfile")?;
    let steps = instructions(&text);
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "COPY",
        "WORKDIR",
        "ENV",
        "EXPOSE",
        "USER",
        "VOLUME",
        "ENTRYPOINT",
        "CMD",
        "STOPSIGNAL",
        "ARG",
        "LABEL",
        "HEALTHCHECK",
    ];
    let mut stages = Vec::new();
    for (word, rest) in &steps {
        assert!(KNOWN.contains(&word.as_str()), "unknown instruction {word}");
        if word == "FROM" {
            let image = rest.split_whitespace().next().unwrap_or_default();
            assert!(
                image.contains(':') && !image.ends_with(":latest"),
                "{image}: pin the base image"
            );
            stages.push(rest.split(" AS ").nth(1).map(str::to_owned));
        }
        if word == "COPY" && rest.starts_with("--from=") {
            let from = rest["--from=".len()..]
                .split_whitespace()
                .next()
                .unwrap_or_default();
            assert!(
                stages.iter().flatten().any(|s| s == from),
                "no stage {from}"
            );
        }
        if word == "ENTRYPOINT" || word == "CMD" {
            let parsed: Vec<String> = serde_json::from_str(rest)
                .map_err(|e| anyhow::anyhow!("{word} must be exec form: {e}"))?;
            assert!(!parsed.is_empty());
        }
    }
    // The toolchain the build uses is the one the repository pins.
    let toolchain = read("rust-toolchain.toml")?;
    let first = &steps[0].1;
    let version = first
        .split(':')
        .nth(1)
        .and_then(|t| t.split('-').next())
        .unwrap_or_default();
    assert!(
        toolchain.contains(&format!("\"{version}")),
        "rust:{version} vs rust-toolchain.toml"
    );
    // The last stage runs as a named, unprivileged user and serves on 8787.
    let last_from = steps
        .iter()
        .rposition(|(w, _)| w == "FROM")
        .unwrap_or_default();
    let runtime = &steps[last_from..];
    let user = runtime
        .iter()
        .rfind(|(w, _)| w == "USER")
        .map(|(_, r)| r.as_str());
    assert!(
        matches!(user, Some(u) if u != "root" && u != "0"),
        "{user:?}"
    );
    assert!(runtime.iter().any(|(w, r)| w == "EXPOSE" && r == "8787"));
    assert!(text.contains("cargo build --release --locked -p confab-proxy"));
    let ignore = read(".dockerignore")?;
    for excluded in ["target", "node_modules", ".env"] {
        assert!(
            ignore.lines().any(|l| l.trim() == excluded),
            "{excluded} not ignored"
        );
    }
    Ok(())
}

#[test]
fn the_iam_policy_grants_only_what_the_proxy_calls() -> anyhow::Result<()> {
    let policy: serde_json::Value = serde_json::from_str(&read("server/deploy/iam-policy.json")?)?;
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    assert_eq!(statements.len(), 1);
    let actions: BTreeSet<String> = statements[0]["Action"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    // The calls the DynamoDB store makes at run time (and the item operations
    // inside its transactions); `setup`'s table creation is not here.
    let mut source = read("server/proxy/src/store/dynamodb.rs")?;
    for part in ["item", "retry", "commit"] {
        source += &read(&format!("server/proxy/src/store/dynamodb/{part}.rs"))?;
    }
    let mut used = BTreeSet::new();
    for (call, action) in [
        (".get_item()", "dynamodb:GetItem"),
        (".update_item()", "dynamodb:UpdateItem"),
        (".query()", "dynamodb:Query"),
        (".batch_get_item()", "dynamodb:BatchGetItem"),
        (".batch_write_item()", "dynamodb:BatchWriteItem"),
        (".transact_write_items()", "dynamodb:TransactWriteItems"),
        (".describe_table()", "dynamodb:DescribeTable"),
        ("Put::builder", "dynamodb:PutItem"),
        ("Update::builder", "dynamodb:UpdateItem"),
        ("Delete::builder", "dynamodb:DeleteItem"),
        ("ConditionCheck::builder", "dynamodb:ConditionCheckItem"),
        (".delete_item()", "dynamodb:DeleteItem"),
        (".scan()", "dynamodb:Scan"),
        (".put_item()", "dynamodb:PutItem"),
    ] {
        if source.contains(call) {
            used.insert(action.to_owned());
        }
    }
    assert_eq!(actions, used, "the policy and the code disagree");
    let resources: Vec<&str> = statements[0]["Resource"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(resources.len(), 2);
    assert!(resources.iter().all(|r| !r.contains('*')), "{resources:?}");
    assert!(resources.iter().any(|r| r.ends_with(":table/confab")));
    assert!(
        resources
            .iter()
            .any(|r| r.ends_with(":table/confab/index/gsi1"))
    );
    Ok(())
}

/// Every file under `dir` with the extension `rs`, read.
fn rust_sources(dir: &str) -> anyhow::Result<String> {
    let mut all = String::new();
    let mut stack = vec![paths::workspace_root().join(dir)];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path)?.flatten().map(|e| e.path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            all.push_str(&std::fs::read_to_string(&path)?);
        }
    }
    Ok(all)
}

#[test]
fn every_variable_the_env_templates_name_is_read_by_the_code() -> anyhow::Result<()> {
    // Read through the AWS SDK's standard chain, not by our code.
    const AWS_CHAIN: &[&str] = &[
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_DYNAMODB",
    ];
    let code = rust_sources("server/proxy/src")?
        + &rust_sources("desktop/session/src")?
        + &rust_sources("src-tauri/src")?;
    for template in [".env.example", "server/deploy/proxy.env.example"] {
        let text = read(template)?;
        let names: Vec<&str> = text
            .lines()
            .map(|l| l.trim_start_matches('#'))
            .filter_map(|l| l.split_once('=').map(|(name, _)| name))
            .filter(|name| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .collect();
        assert!(names.len() >= 5, "{template}: {names:?}");
        for name in names {
            assert!(
                AWS_CHAIN.contains(&name) || code.contains(&format!("\"{name}\"")),
                "{template} names {name}, which nothing reads"
            );
        }
    }
    Ok(())
}
