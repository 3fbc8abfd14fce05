//! moto's DynamoDB-compatible server, a real process on a loopback port.
//! scripts/setup installs it (pinned) into a virtual environment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::bail;

use crate::net::{free_port, wait_for_port};
use crate::process::Service;

pub const VERSION: &str = "5.2.5";

pub fn server_path() -> PathBuf {
    if let Some(path) = std::env::var_os("CONFAB_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache")
        .join("confab")
        .join(format!("moto-{VERSION}"))
        .join("bin")
        .join("moto_server")
}

pub struct Moto {
    pub port: u16,
    artifacts: PathBuf,
    service: Option<Service>,
}

impl Moto {
    pub fn start(artifacts: &Path) -> anyhow::Result<Self> {
        let mut moto = Self {
            port: free_port()?,
            artifacts: artifacts.to_path_buf(),
            service: None,
        };
        moto.resume()?;
        Ok(moto)
    }

    /// Started, with Confab's table set up (`confab-proxy setup`).
    pub fn with_table(artifacts: &Path) -> anyhow::Result<Self> {
        let moto = Self::start(artifacts)?;
        moto.setup_table()?;
        Ok(moto)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// AWS settings for a proxy to use this server through the standard AWS
    /// chain.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_DYNAMODB", self.endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ]
    }

    /// `confab-proxy setup`: the table, its index and TTL.
    pub fn setup_table(&self) -> anyhow::Result<()> {
        let output = Command::new(crate::paths::binary("confab-proxy")?)
            .arg("setup")
            .envs(self.aws_env())
            .output()?;
        if !output.status.success() {
            bail!("setup failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }

    /// One DynamoDB API call sent straight to the server (moto does not check
    /// signatures): for tests that watch or change the store behind the proxy.
    async fn call(
        &self,
        target: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let response = reqwest::Client::new()
            .post(self.endpoint())
            .header("X-Amz-Target", format!("DynamoDB_20120810.{target}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await?;
        if !response.status().is_success() {
            bail!(
                "{target} failed: {}",
                response.text().await.unwrap_or_default()
            );
        }
        Ok(response.json().await?)
    }

    /// Counts the items of `table` whose sort key starts with `prefix`, with a
    /// Scan sent straight to the server (moto does not check signatures): for
    /// tests that watch the store without going through the proxy.
    pub async fn count_items(&self, table: &str, prefix: &str) -> anyhow::Result<usize> {
        let mut count = 0;
        let mut start: Option<serde_json::Value> = None;
        loop {
            let mut body = serde_json::json!({
                "TableName": table,
                "Select": "COUNT",
                "FilterExpression": "begins_with(sk, :prefix)",
                "ExpressionAttributeValues": {":prefix": {"S": prefix}},
            });
            if let Some(key) = start.take() {
                body["ExclusiveStartKey"] = key;
            }
            let page = self.call("Scan", body).await?;
            count += page["Count"].as_u64().unwrap_or(0) as usize;
            match page.get("LastEvaluatedKey") {
                Some(key) if !key.is_null() => start = Some(key.clone()),
                _ => return Ok(count),
            }
        }
    }

    /// Deletes the items of `table` whose sort key starts with `prefix`
    /// (Scan, then DeleteItem each), straight at the server: for tests that
    /// play DynamoDB's TTL pruning history.
    pub async fn delete_items(&self, table: &str, prefix: &str) -> anyhow::Result<usize> {
        let page = self
            .call(
                "Scan",
                serde_json::json!({
                    "TableName": table,
                    "FilterExpression": "begins_with(sk, :prefix)",
                    "ExpressionAttributeValues": {":prefix": {"S": prefix}},
                    "ProjectionExpression": "pk, sk",
                }),
            )
            .await?;
        if page.get("LastEvaluatedKey").is_some_and(|k| !k.is_null()) {
            bail!("more items than one Scan page: not for tests this large");
        }
        let items = page["Items"].as_array().cloned().unwrap_or_default();
        for key in &items {
            self.call(
                "DeleteItem",
                serde_json::json!({"TableName": table, "Key": key}),
            )
            .await?;
        }
        Ok(items.len())
    }

    /// Stops the server (its data is lost: moto keeps it in memory).
    pub fn stop(&mut self) {
        self.service = None;
    }

    /// Starts the server again on the same port.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        let path = server_path();
        if !path.is_file() {
            bail!(
                "{} is missing: run scripts/setup (it installs moto {VERSION})",
                path.display()
            );
        }
        let mut cmd = Command::new(path);
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()]);
        let service = Service::spawn(cmd, &format!("moto-{}", self.port), &self.artifacts)?;
        wait_for_port(([127, 0, 0, 1], self.port).into(), Duration::from_secs(30))?;
        self.service = Some(service);
        Ok(())
    }
}
