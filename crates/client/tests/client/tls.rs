//! HTTPS through rustls: a test CA made with rcgen, a TLS server on 127.0.0.1 port 0, and
//! the client trusting the CA through `TlsRoots::extra_ca_file`.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokenpace_client::{Api, Client, ClientOptions, ErrorClass, Target, TlsRoots, derive};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::support::{chat, read_request, send, sse_response};

/// A TLS server for `localhost` and 127.0.0.1 answering every request with an SSE stream,
/// and the path of a PEM file holding its CA.
async fn tls_server(response: String) -> (String, PathBuf) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ca_file = std::env::temp_dir().join(format!(
        "tokenpace-client-test-ca-{}-{}.pem",
        std::process::id(),
        addr.port()
    ));
    std::fs::write(&ca_file, ca.as_ref().pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(server_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let response = response.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                read_request(&mut tls).await;
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (format!("https://localhost:{}", addr.port()), ca_file)
}

fn stream_body() -> String {
    sse_response(&[
        r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
        r#"data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}"#,
        r#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        "data: [DONE]",
    ])
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let (url, ca_file) = tls_server(stream_body()).await;
    let client = Client::new(ClientOptions {
        tls_roots: TlsRoots {
            webpki: true,
            extra_ca_file: Some(ca_file.clone()),
        },
        ..ClientOptions::default()
    })
    .unwrap();
    let ep = Target::new("tls", &url, Api::OpenAi).endpoint().unwrap();
    let ledger = send(&client, &chat(&ep, "gpt-4o-mini", true, false)).await;
    let _ = std::fs::remove_file(&ca_file);
    assert!(ledger.is_success(), "{:?}", ledger.outcome);
    assert!(ledger.conn.dns.is_some(), "localhost is resolved");
    assert!(ledger.conn.tcp.is_some());
    let tls = ledger.conn.tls.unwrap();
    let m = derive(&ledger, "gpt-4o-mini");
    assert!(m.conn_setup.unwrap() >= tls);
    assert_eq!(m.output_tokens.0, 1);
}

#[tokio::test]
async fn untrusted_certificate_is_a_tls_error() {
    let (url, ca_file) = tls_server(stream_body()).await;
    let _ = std::fs::remove_file(&ca_file);
    let client = Client::new(ClientOptions::default()).unwrap();
    let ep = Target::new("tls", &url, Api::OpenAi).endpoint().unwrap();
    let ledger = send(&client, &chat(&ep, "gpt-4o-mini", true, false)).await;
    match &ledger.outcome {
        Err(ErrorClass::Tls(message)) => {
            assert!(message.to_lowercase().contains("certificate"), "{message}");
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    assert!(ledger.conn.tcp.is_some(), "TCP came up before TLS failed");
    assert_eq!(ledger.conn.tls, None);
}
