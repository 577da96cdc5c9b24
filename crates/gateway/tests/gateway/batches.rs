//! `/v1/files` and `/v1/batches` through a real gateway (127.0.0.1 port 0) in front of the
//! simulator, each test with its own temporary data directory: uploads and their errors,
//! a batch run to completion, validation failures, tenant isolation, cancel, and a batch
//! that survives a gateway restart.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{Value, json};
use sim::RunningSim;
use tempfile::TempDir;
use tokenpace_gateway::RunningGateway;

use super::support::*;

const KEYS: &str = "[[keys]]\ntenant = \"team-a\"\nkey = \"key-a\"\n\n\
                    [[keys]]\ntenant = \"team-b\"\nkey = \"key-b\"\n";

/// A gateway config in front of `sim` with its data in `dir`; `rest` adds tables.
fn batch_toml(sim: &RunningSim, dir: &TempDir, rest: &str) -> String {
    sim_toml(
        sim,
        &format!("data_dir = \"{}\"", dir.path().display()),
        &format!("[cache]\nstore = \"memory\"\n\n{rest}"),
    )
}

/// A simulator, a data directory and a gateway using both.
struct Env {
    sim: RunningSim,
    dir: TempDir,
    gw: RunningGateway,
    c: reqwest::Client,
}

impl Env {
    async fn new(rest: &str) -> Env {
        let sim = sim().await;
        let dir = tempfile::tempdir().unwrap();
        let gw = gateway(config(&batch_toml(&sim, &dir, rest))).await;
        Env {
            sim,
            dir,
            gw,
            c: client(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw.url())
    }

    fn auth(req: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
        match key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let resp = Self::auth(self.c.get(self.url(path)), key)
            .send()
            .await
            .unwrap();
        status_json(resp).await
    }

    async fn post(&self, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
        let resp = Self::auth(self.c.post(self.url(path)).json(body), key)
            .send()
            .await
            .unwrap();
        status_json(resp).await
    }

    async fn delete(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let resp = Self::auth(self.c.delete(self.url(path)), key)
            .send()
            .await
            .unwrap();
        status_json(resp).await
    }

    /// Uploads a form built by [`form`].
    async fn upload_form(
        &self,
        (content_type, body): (String, Vec<u8>),
        key: Option<&str>,
    ) -> (u16, Value) {
        let req = self
            .c
            .post(self.url("/v1/files"))
            .header("content-type", content_type)
            .body(body);
        status_json(Self::auth(req, key).send().await.unwrap()).await
    }

    /// Uploads `content` as a batch input; returns the file object.
    async fn upload(&self, content: &[u8], key: Option<&str>) -> Value {
        let (status, file) = self
            .upload_form(form(Some("batch"), Some(("in.jsonl", content))), key)
            .await;
        assert_eq!(status, 200, "{file}");
        file
    }

    async fn content(&self, id: &str, key: Option<&str>) -> (u16, Vec<u8>) {
        let resp = Self::auth(
            self.c.get(self.url(&format!("/v1/files/{id}/content"))),
            key,
        )
        .send()
        .await
        .unwrap();
        (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
    }

    /// Creates a chat batch from file `input`; returns the batch object.
    async fn create(&self, input: &str, key: Option<&str>) -> Value {
        let (status, b) = self
            .post(
                "/v1/batches",
                &json!({"input_file_id": input, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
                key,
            )
            .await;
        assert_eq!(status, 200, "{b}");
        b
    }

    /// Polls batch `id` until `done` holds (at most 30 s).
    async fn wait(&self, id: &str, key: Option<&str>, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, b) = self.get(&format!("/v1/batches/{id}"), key).await;
            assert_eq!(status, 200, "{b}");
            if done(&b) {
                return b;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "batch never got there: {b}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn status_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// A multipart/form-data body with an optional `purpose` and an optional `file` part.
fn form(purpose: Option<&str>, file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "tokenpace-test-boundary-7d9a";
    let mut body = Vec::new();
    if let Some(p) = purpose {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"purpose\"\r\n\r\n{p}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((name, content)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\ncontent-type: application/jsonl\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `n` chat lines for `model`, ids `req-0`.., each with its own prompt (no cache hits, no
/// coalescing: every line is one upstream request).
fn lines(n: usize, model: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let line = json!({
            "custom_id": format!("req-{i}"),
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": format!("line {i}")}]},
        });
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// The JSON lines of a file's content.
fn jsonl(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The custom ids of output lines, checking each is a 200 response.
fn ok_ids(out: &[Value]) -> BTreeSet<String> {
    for line in out {
        assert_eq!(line["response"]["status_code"], 200, "{line}");
        assert!(line["error"].is_null(), "{line}");
        assert!(
            line["id"].as_str().unwrap().starts_with("batch_req_"),
            "{line}"
        );
    }
    out.iter()
        .map(|l| l["custom_id"].as_str().unwrap().to_owned())
        .collect()
}

fn all_ids(n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("req-{i}")).collect()
}

fn error_param(v: &Value) -> &str {
    v["error"]["param"].as_str().unwrap_or("<null>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_upload_list_retrieve_content_and_delete() {
    let env = Env::new("").await;
    let content = lines(3, "sim:tokens=3");
    let file = env.upload(&content, None).await;
    let id = file["id"].as_str().unwrap();
    assert!(id.starts_with("file-"), "{file}");
    assert_eq!(file["object"], "file");
    assert_eq!(file["bytes"], content.len());
    assert_eq!(file["filename"], "in.jsonl");
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["status"], "processed");
    assert!(
        file["created_at"].as_i64().unwrap() > 1_700_000_000,
        "{file}"
    );
    // Larger than axum's default body limit (2 MB): uploads have their own.
    let second = env.upload(&vec![b'x'; 3 << 20], None).await;
    assert_eq!(second["bytes"], 3 << 20);

    let (status, list) = env.get("/v1/files", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second["id"].as_str().unwrap(), id], "newest first");
    assert_eq!(list["has_more"], false);
    let (_, page) = env.get("/v1/files?limit=1&order=asc", None).await;
    assert_eq!(page["data"][0]["id"], id);
    assert_eq!(page["has_more"], true);
    let (_, rest) = env
        .get(&format!("/v1/files?order=asc&after={id}"), None)
        .await;
    assert_eq!(rest["data"][0]["id"], second["id"]);
    let (_, none) = env.get("/v1/files?purpose=batch_output", None).await;
    assert_eq!(none["data"], json!([]));

    let (status, got) = env.get(&format!("/v1/files/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(got, file);
    let (status, bytes) = env.content(id, None).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, content, "the content comes back byte for byte");

    let (status, deleted) = env.delete(&format!("/v1/files/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        json!({"id": id, "object": "file", "deleted": true})
    );
    let (status, gone) = env.get(&format!("/v1/files/{id}"), None).await;
    assert_eq!(status, 404, "{gone}");
    assert_eq!(gone["error"]["type"], "invalid_request_error");
    assert!(
        gone["error"]["message"].as_str().unwrap().contains(id),
        "{gone}"
    );
    assert_eq!(env.content(id, None).await.0, 404);
    assert_eq!(env.delete(&format!("/v1/files/{id}"), None).await.0, 404);
    assert!(
        !env.dir.path().join("files").join(id).exists(),
        "the content of a deleted file is removed"
    );
    let (_, list) = env.get("/v1/files", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_errors_name_the_field_and_the_limit() {
    let env = Env::new("[batches]\nmax_file_bytes = 1000\n").await;
    let jsonl = b"{}\n".as_slice();

    let (status, e) = env
        .upload_form(form(None, Some(("a.jsonl", jsonl))), None)
        .await;
    assert_eq!((status, error_param(&e)), (400, "purpose"), "{e}");
    let (status, e) = env
        .upload_form(form(Some("fine-tune"), Some(("a.jsonl", jsonl))), None)
        .await;
    assert_eq!((status, error_param(&e)), (400, "purpose"), "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fine-tune"),
        "{e}"
    );
    let (status, e) = env.upload_form(form(Some("batch"), None), None).await;
    assert_eq!((status, error_param(&e)), (400, "file"), "{e}");
    let (status, e) = env
        .post("/v1/files", &json!({"purpose": "batch"}), None)
        .await;
    assert_eq!((status, error_param(&e)), (400, "file"), "{e}");

    // Larger than the limit, streamed (no content-length to go by).
    let big = vec![b'x'; 5000];
    let (content_type, body) = form(Some("batch"), Some(("big.jsonl", &big)));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(700).map(|c| Ok(c.to_vec())).collect();
    let resp = env
        .c
        .post(env.url("/v1/files"))
        .header("content-type", content_type)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    let (status, e) = status_json(resp).await;
    assert_eq!(status, 413, "{e}");
    assert_eq!(e["error"]["code"], "file_too_large");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1,000 bytes"),
        "{e}"
    );
    // A declared length over the limit is refused before the body is read: only the head
    // is sent here, and the answer comes anyway.
    let mut tcp = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nhost: {}\r\ncontent-type: multipart/form-data; boundary=b\r\ncontent-length: 5000000\r\n\r\n",
        env.gw.addr
    );
    tokio::io::AsyncWriteExt::write_all(&mut tcp, head.as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("file_too_large") {
            let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("file_too_large"), "{answer}");
    // Nothing half-written is left behind, and nothing was recorded.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path().join("files"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let (_, list) = env.get("/v1/files", None).await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_to_completed_with_one_output_line_per_custom_id() {
    let env = Env::new("").await;
    let model = "sim:tokens=3";
    let file = env.upload(&lines(20, model), None).await;
    let (status, created) = env
        .post(
            "/v1/batches",
            &json!({
                "input_file_id": file["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"job": "nightly"},
            }),
            None,
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("batch_"), "{created}");
    assert_eq!(created["object"], "batch");
    assert_eq!(created["status"], "validating");
    assert_eq!(created["input_file_id"], file["id"]);
    assert_eq!(created["metadata"], json!({"job": "nightly"}));

    let done = env.wait(id, None, |b| b["status"] == "completed").await;
    assert_eq!(
        done["request_counts"],
        json!({"total": 20, "completed": 20, "failed": 0})
    );
    assert!(done["error_file_id"].is_null(), "{done}");
    assert!(done["errors"].is_null(), "{done}");
    for at in [
        "created_at",
        "in_progress_at",
        "finalizing_at",
        "completed_at",
    ] {
        assert!(done[at].as_i64().is_some(), "{at}: {done}");
    }
    for at in ["failed_at", "cancelling_at", "cancelled_at", "expired_at"] {
        assert!(done[at].is_null(), "{at}: {done}");
    }
    let out_id = done["output_file_id"].as_str().unwrap();
    let (_, out_file) = env.get(&format!("/v1/files/{out_id}"), None).await;
    assert_eq!(out_file["purpose"], "batch_output");
    assert_eq!(out_file["filename"], format!("{id}_output.jsonl"));
    let (status, bytes) = env.content(out_id, None).await;
    assert_eq!(status, 200);
    assert_eq!(out_file["bytes"], bytes.len());
    let out = jsonl(&bytes);
    assert_eq!(out.len(), 20, "one line per request");
    assert_eq!(ok_ids(&out), all_ids(20));
    assert_eq!(
        out[0]["response"]["body"]["usage"]["completion_tokens"], 3,
        "{}",
        out[0]
    );
    assert_eq!(upstream_requests(&env.sim, model).await, 20);
    // The batch's checkpoint is gone once the batch is final.
    let state: Vec<_> = std::fs::read_dir(env.dir.path().join("batches").join(id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tokenpace-state"))
        .collect();
    assert!(state.is_empty(), "{state:?}");
    let (_, list) = env.get("/v1/batches", None).await;
    assert_eq!(list["data"][0]["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_lines_go_to_the_error_file() {
    let env = Env::new("[retry]\nmax_attempts = 1\n").await;
    let mut content = lines(3, "sim:tokens=2");
    content.extend_from_slice(
        json!({"custom_id": "broken", "method": "POST", "url": "/v1/chat/completions",
               "body": {"model": "sim:fail_rate=1,fail_status=500", "messages": [{"role": "user", "content": "x"}]}})
        .to_string()
        .as_bytes(),
    );
    content.push(b'\n');
    let file = env.upload(&content, None).await;
    let b = env.create(file["id"].as_str().unwrap(), None).await;
    let done = env
        .wait(b["id"].as_str().unwrap(), None, |b| {
            b["status"] == "completed"
        })
        .await;
    assert_eq!(
        done["request_counts"],
        json!({"total": 4, "completed": 3, "failed": 1})
    );
    let (_, bytes) = env
        .content(done["error_file_id"].as_str().unwrap(), None)
        .await;
    let errors = jsonl(&bytes);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["custom_id"], "broken");
    assert_eq!(
        errors[0]["error"]["code"], "upstream_error",
        "{}",
        errors[0]
    );
    let (_, bytes) = env
        .content(done["output_file_id"].as_str().unwrap(), None)
        .await;
    assert_eq!(jsonl(&bytes).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_lines_fail_the_batch_with_their_line_numbers() {
    let env = Env::new("").await;
    let mut content = lines(2, "sim:tokens=2");
    content.extend_from_slice(b"not json\n");
    content.extend_from_slice(
        json!({"custom_id": "c", "method": "POST", "url": "/v1/completions",
               "body": {"model": "sim:tokens=2", "prompt": "x"}})
        .to_string()
        .as_bytes(),
    );
    content.extend_from_slice(b"\n");
    content.extend_from_slice(&lines(1, "sim:tokens=2")); // req-0 again
    let model_requests_before = upstream_requests(&env.sim, "sim:tokens=2").await;
    let file = env.upload(&content, None).await;
    let b = env.create(file["id"].as_str().unwrap(), None).await;
    let failed = env
        .wait(b["id"].as_str().unwrap(), None, |b| b["status"] == "failed")
        .await;
    assert!(failed["failed_at"].as_i64().is_some(), "{failed}");
    assert!(
        failed["output_file_id"].is_null() && failed["in_progress_at"].is_null(),
        "{failed}"
    );
    let errors = &failed["errors"];
    assert_eq!(errors["object"], "list");
    let by_line: HashMap<u64, &Value> = errors["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e))
        .collect();
    assert_eq!(by_line.len(), 3, "{errors}");
    assert_eq!(by_line[&3]["code"], "invalid_request");
    assert!(
        by_line[&4]["message"]
            .as_str()
            .unwrap()
            .contains("endpoint"),
        "{errors}"
    );
    assert_eq!(by_line[&5]["code"], "duplicate_custom_id");
    assert_eq!(
        upstream_requests(&env.sim, "sim:tokens=2").await,
        model_requests_before,
        "nothing of an invalid batch is sent"
    );

    let file = env.upload(b"\n\n", None).await;
    let b = env.create(file["id"].as_str().unwrap(), None).await;
    let failed = env
        .wait(b["id"].as_str().unwrap(), None, |b| b["status"] == "failed")
        .await;
    assert_eq!(failed["errors"]["data"][0]["code"], "empty_file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_errors_are_openai_json_naming_the_field() {
    let env = Env::new("").await;
    let file = env.upload(&lines(1, "sim:tokens=2"), None).await;
    let fid = file["id"].as_str().unwrap();
    let create = |extra: Value| {
        let mut body = json!({"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    for (extra, param) in [
        (json!({"endpoint": "/v1/embeddings"}), "endpoint"),
        (json!({"completion_window": "1h"}), "completion_window"),
        (json!({"completion_window": null}), "completion_window"),
        (json!({"input_file_id": "file-nope"}), "input_file_id"),
        (json!({"input_file_id": 7}), "input_file_id"),
        (json!({"metadata": {"k": 1}}), "metadata"),
        (json!({"model": "gpt-4o"}), "model"),
    ] {
        let (status, e) = env.post("/v1/batches", &create(extra.clone()), None).await;
        assert_eq!(status, 400, "{extra}: {e}");
        assert_eq!(error_param(&e), param, "{extra}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error");
    }
    let (status, e) = env.get("/v1/batches/batch_nope", None).await;
    assert_eq!((status, error_param(&e)), (404, "id"), "{e}");
    let (status, e) = env
        .post("/v1/batches/batch_nope/cancel", &json!({}), None)
        .await;
    assert_eq!(status, 404, "{e}");
    let (status, e) = env.get("/v1/batches?limit=101", None).await;
    assert_eq!((status, error_param(&e)), (400, "limit"), "{e}");
    let (status, e) = env.get("/v1/batches?after=batch_nope", None).await;
    assert_eq!((status, error_param(&e)), (400, "after"), "{e}");

    // An output file is not a batch input; a finished batch is not cancelled.
    let b = env.create(fid, None).await;
    let id = b["id"].as_str().unwrap();
    let done = env.wait(id, None, |b| b["status"] == "completed").await;
    let (status, e) = env
        .post(
            "/v1/batches",
            &create(json!({"input_file_id": done["output_file_id"]})),
            None,
        )
        .await;
    assert_eq!((status, error_param(&e)), (400, "input_file_id"), "{e}");
    let (status, e) = env
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}), None)
        .await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("completed"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_list_newest_first_with_limit_and_after() {
    let env = Env::new("").await;
    let file = env.upload(&lines(1, "sim:tokens=1"), None).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            env.create(file["id"].as_str().unwrap(), None).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let (status, page) = env.get("/v1/batches?limit=2", None).await;
    assert_eq!(status, 200, "{page}");
    let got: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["first_id"], ids[2]);
    assert_eq!(page["last_id"], ids[1]);
    let (_, rest) = env
        .get(&format!("/v1/batches?limit=2&after={}", ids[1]), None)
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["data"][0]["id"], ids[0]);
    assert_eq!(rest["has_more"], false);
    for id in &ids {
        env.wait(id, None, |b| b["status"] == "completed").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_files_and_batches() {
    let env = Env::new(KEYS).await;
    let (a, b) = (Some("key-a"), Some("key-b"));
    let (status, e) = env.get("/v1/files", None).await;
    assert_eq!(status, 401, "a key is required: {e}");

    let file = env.upload(&lines(2, "sim:tokens=2"), a).await;
    let fid = file["id"].as_str().unwrap();
    assert_eq!(env.get(&format!("/v1/files/{fid}"), b).await.0, 404);
    assert_eq!(env.content(fid, b).await.0, 404);
    assert_eq!(env.delete(&format!("/v1/files/{fid}"), b).await.0, 404);
    let (_, list) = env.get("/v1/files", b).await;
    assert_eq!(list["data"], json!([]));
    // Another tenant's file is no input.
    let (status, e) = env
        .post(
            "/v1/batches",
            &json!({"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            b,
        )
        .await;
    assert_eq!((status, error_param(&e)), (400, "input_file_id"), "{e}");

    let batch = env.create(fid, a).await;
    let id = batch["id"].as_str().unwrap();
    assert_eq!(env.get(&format!("/v1/batches/{id}"), b).await.0, 404);
    assert_eq!(
        env.post(&format!("/v1/batches/{id}/cancel"), &json!({}), b)
            .await
            .0,
        404
    );
    let (_, list) = env.get("/v1/batches", b).await;
    assert_eq!(list["data"], json!([]));
    let done = env.wait(id, a, |b| b["status"] == "completed").await;
    // The output belongs to the batch's tenant too.
    let out = done["output_file_id"].as_str().unwrap();
    assert_eq!(env.content(out, a).await.0, 200);
    assert_eq!(env.content(out, b).await.0, 404);
    let (_, list) = env.get("/v1/files", b).await;
    assert_eq!(list["data"], json!([]));
    let (_, list) = env.get("/v1/files", a).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        2,
        "input and output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_slow_batch_and_keeps_the_finished_lines() {
    let env = Env::new("[batches]\nconcurrency = 2\n").await;
    let model = "sim:ttft=200ms,tokens=2";
    let file = env.upload(&lines(20, model), None).await;
    let b = env.create(file["id"].as_str().unwrap(), None).await;
    let id = b["id"].as_str().unwrap();
    let running = env
        .wait(id, None, |b| {
            b["request_counts"]["completed"].as_u64() >= Some(2)
        })
        .await;
    assert_eq!(
        running["status"], "in_progress",
        "live counts while it runs"
    );
    assert_eq!(running["request_counts"]["total"], 20);

    let (status, cancelling) = env
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}), None)
        .await;
    assert_eq!(status, 200, "{cancelling}");
    assert!(
        cancelling["status"] == "cancelling" || cancelling["status"] == "cancelled",
        "{cancelling}"
    );
    assert!(
        cancelling["cancelling_at"].as_i64().is_some(),
        "{cancelling}"
    );
    // Cancelling again is no error.
    assert_eq!(
        env.post(&format!("/v1/batches/{id}/cancel"), &json!({}), None)
            .await
            .0,
        200
    );

    let cancelled = env.wait(id, None, |b| b["status"] == "cancelled").await;
    assert!(cancelled["cancelled_at"].as_i64().is_some(), "{cancelled}");
    assert!(cancelled["completed_at"].is_null(), "{cancelled}");
    let finished = cancelled["request_counts"]["completed"].as_u64().unwrap();
    assert!((2..20).contains(&finished), "{cancelled}");
    let (_, bytes) = env
        .content(cancelled["output_file_id"].as_str().unwrap(), None)
        .await;
    let out = jsonl(&bytes);
    assert_eq!(
        out.len() as u64,
        finished,
        "the output holds the finished lines"
    );
    assert_eq!(ok_ids(&out).len() as u64, finished);
    // Lines in flight at the cancel finished and were written; nothing else was sent.
    assert_eq!(upstream_requests(&env.sim, model).await, finished);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        upstream_requests(&env.sim, model).await,
        finished,
        "nothing sent after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_resumes_after_a_restart_with_one_line_per_custom_id() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = batch_toml(&sim, &dir, "[batches]\nconcurrency = 4\n");
    let model = "sim:ttft=100ms,tokens=2";
    let c = client();
    let first = Env {
        sim,
        dir,
        gw: gateway(config(&toml)).await,
        c: c.clone(),
    };
    let file = first.upload(&lines(40, model), None).await;
    let b = first.create(file["id"].as_str().unwrap(), None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    first
        .wait(&id, None, |b| {
            b["request_counts"]["completed"].as_u64() >= Some(8)
        })
        .await;

    let Env { sim, dir, gw, .. } = first;
    tokio::time::timeout(Duration::from_secs(20), gw.stop())
        .await
        .unwrap()
        .unwrap();
    let output = dir.path().join("batches").join(&id).join("output.jsonl");
    let written = jsonl(&std::fs::read(&output).unwrap()).len();
    assert!(
        (8..40).contains(&written),
        "stopped mid-batch: {written} lines"
    );
    assert_eq!(
        upstream_requests(&sim, model).await,
        written as u64,
        "lines in flight at the stop finished and were written"
    );

    let second = Env {
        gw: gateway(config(&toml)).await,
        sim,
        dir,
        c,
    };
    let done = second.wait(&id, None, |b| b["status"] == "completed").await;
    assert_eq!(
        done["request_counts"],
        json!({"total": 40, "completed": 40, "failed": 0})
    );
    let (_, bytes) = second
        .content(done["output_file_id"].as_str().unwrap(), None)
        .await;
    let out = jsonl(&bytes);
    assert_eq!(out.len(), 40, "exactly one line per custom_id");
    assert_eq!(ok_ids(&out), all_ids(40));
    assert_eq!(
        upstream_requests(&second.sim, model).await,
        40,
        "no line was sent twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_belongs_to_one_gateway() {
    let env = Env::new("").await;
    env.upload(b"{}\n", None).await;
    let other = gateway(config(&batch_toml(&env.sim, &env.dir, ""))).await;
    let resp = env
        .c
        .get(format!("{}/v1/files", other.url()))
        .send()
        .await
        .unwrap();
    let (status, e) = status_json(resp).await;
    assert_eq!(status, 503, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in use by another gateway"),
        "{e}"
    );
    // The first one is unaffected.
    assert_eq!(env.get("/v1/files", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_past_its_completion_window_expires_with_the_finished_lines() {
    let env = Env::new("[batches]\nconcurrency = 1\ncompletion_window = \"2s\"\n").await;
    let model = "sim:ttft=250ms,tokens=2";
    let file = env.upload(&lines(30, model), None).await;
    let b = env.create(file["id"].as_str().unwrap(), None).await;
    let id = b["id"].as_str().unwrap();
    let created = b["created_at"].as_i64().unwrap();
    assert_eq!(b["expires_at"].as_i64(), Some(created + 2), "{b}");
    let expired = env.wait(id, None, |b| b["status"] == "expired").await;
    assert!(expired["expired_at"].as_i64().is_some(), "{expired}");
    assert!(expired["completed_at"].is_null(), "{expired}");
    let finished = expired["request_counts"]["completed"].as_u64().unwrap();
    assert!(
        (1..30).contains(&finished),
        "some lines, not all: {expired}"
    );
    assert_eq!(expired["request_counts"]["total"], 30);
    let (_, bytes) = env
        .content(expired["output_file_id"].as_str().unwrap(), None)
        .await;
    let out = jsonl(&bytes);
    assert_eq!(
        out.len() as u64,
        finished,
        "the output holds the finished lines"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        upstream_requests(&env.sim, model).await,
        finished,
        "nothing is sent after the batch expired"
    );
}
