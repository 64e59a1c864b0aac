//! A moto S3 server (`moto[server]` from PyPI, installed by scripts/test.sh)
//! on a free 127.0.0.1 port, with one bucket, for tests that need a real
//! S3-protocol server (`alone/s3.rs`, `server/api/export_push.rs`).
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket every moto server starts with.
pub const BUCKET: &str = "wb-backups";
/// A moto S3 server on a free loopback port, killed on drop (also when stopped).
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    pub async fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed for the S3 tests");
        let mut moto = Moto { child, port };
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(response) = client.get(moto.endpoint()).send().await {
                if response.status().is_success() {
                    break;
                }
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto exited ({status}); install it with python3 -m pip install 'moto[server]' (scripts/test.sh does)"
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not answer on port {port} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // moto accepts an unsigned bucket creation.
        let created = client
            .put(format!("{}/{BUCKET}", moto.endpoint()))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{}", created.status());
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The object-store URL of `prefix` in the test bucket.
    pub fn url(&self, prefix: &str, options: &str) -> String {
        format!(
            "s3://{BUCKET}/{prefix}?endpoint={}&region=us-east-1{options}",
            self.endpoint()
        )
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// Keys under `prefix`, read straight from the bucket over HTTP.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let xml = reqwest::Client::new()
            .get(format!("{}/{BUCKET}", self.endpoint()))
            .query(&[("list-type", "2"), ("prefix", prefix)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|part| part.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect()
    }

    /// An object by its full key, through a signed client of the whole bucket
    /// (moto takes any access key).
    pub async fn object(&self, key: &str) -> Vec<u8> {
        use object_store::ObjectStoreExt;
        let bucket = match wb_server::objects::ObjectStoreUrl::parse(&self.url("", "")).unwrap() {
            wb_server::objects::ObjectStoreUrl::S3(s3) => s3
                .open_with_credentials("testing", "testing", &wb_server::egress::Egress::new(true))
                .unwrap(),
            other => panic!("not an s3 URL: {other:?}"),
        };
        bucket
            .get(&object_store::path::Path::from(key))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
