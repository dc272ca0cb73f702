//! The dashboard's server: what it answers, to whom, and when it refuses to start.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};

use ocellus_dashboard::{Dashboard, DashboardOptions, Status};
use ocellus_train::trainer::BatchProgress;

fn options(port: u16) -> DashboardOptions {
    DashboardOptions {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
        allow_remote: false,
    }
}

/// (status code, body) of `GET path` with the given Host header.
fn get(port: u16, path: &str, host: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the dashboard accepts");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response[9..12].parse().expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (code, body)
}

fn port_of(d: &Dashboard) -> u16 {
    d.url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn state(port: u16) -> serde_json::Value {
    let (code, body) = get(port, "/api/state", &format!("127.0.0.1:{port}"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn progress(epoch: usize, batch: usize, batches: usize, loss: f32, accuracy: f32) -> BatchProgress {
    BatchProgress {
        epoch,
        batch,
        batches,
        loss,
        accuracy,
        images_per_second: 1000.0,
        elapsed: batch as f64 * 0.5,
    }
}

#[test]
fn serves_the_page_and_the_state_to_loopback_names_only() {
    let d = Dashboard::start(&options(0)).unwrap();
    assert!(d.url.starts_with("http://127.0.0.1:"), "{}", d.url);
    let port = port_of(&d);
    let (code, page) = get(port, "/", &format!("localhost:{port}"));
    assert_eq!(code, 200);
    assert!(page.contains("<script src=\"dashboard.js\">"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing from elsewhere"
    );
    let (code, script) = get(port, "/dashboard.js", &format!("127.0.0.1:{port}"));
    assert_eq!(code, 200);
    assert!(script.contains("api/state"));
    assert_eq!(state(port)["status"], "starting");
    // No pictures before a run has begun, and nothing else is served.
    assert_eq!(
        get(port, "/api/filters.png", &format!("127.0.0.1:{port}")).0,
        404
    );
    assert_eq!(
        get(port, "/../Cargo.toml", &format!("127.0.0.1:{port}")).0,
        404
    );
    // A request for another host name (DNS rebinding) is refused.
    assert_eq!(
        get(port, "/api/state", &format!("attacker.example:{port}")).0,
        403
    );
    assert_eq!(get(port, "/api/state", "127.0.0.1:1").0, 403);

    d.finish(Status::Finished, "done");
    assert_eq!(state(port)["status"], "finished");
    assert_eq!(state(port)["message"], "done");
    drop(d);
    // The listening socket closes when the server's accept thread sees the stop, at the
    // latest on the next connection attempt.
    let closed = (0..50).any(|_| {
        let refused = TcpStream::connect(("127.0.0.1", port)).is_err();
        std::thread::sleep(std::time::Duration::from_millis(100));
        refused
    });
    assert!(closed, "the server stops with the dashboard");
}

#[test]
fn the_step_curve_is_each_steps_value_smoothed() {
    let d = Dashboard::start(&options(0)).unwrap();
    let port = port_of(&d);
    // Per-step losses and accuracies, fed as the running means the trainer reports.
    let losses = [2.0, 1.0, 1.5, 0.5];
    let accuracies = [0.25, 0.5, 0.75, 1.0];
    for k in 1..=4 {
        let mean = |v: &[f64]| v[..k].iter().sum::<f64>() / k as f64;
        d.batch(&progress(
            1,
            k,
            4,
            mean(&losses) as f32,
            mean(&accuracies) as f32,
        ));
    }
    let steps = state(port)["steps"].as_array().unwrap().clone();
    assert_eq!(steps.len(), 4);
    let (mut loss, mut accuracy) = (losses[0], accuracies[0]);
    for (k, step) in steps.iter().enumerate() {
        if k > 0 {
            loss += 0.05 * (losses[k] - loss);
            accuracy += 0.05 * (accuracies[k] - accuracy);
        }
        let got: Vec<f64> = step
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!((got[0] - (k + 1) as f64 / 4.0).abs() < 1e-12, "{got:?}");
        assert!(
            (got[1] - loss).abs() < 1e-6,
            "step {k}: {got:?} vs loss {loss}"
        );
        assert!(
            (got[2] - accuracy).abs() < 1e-6,
            "step {k}: {got:?} vs accuracy {accuracy}"
        );
    }
    let s = state(port);
    assert_eq!(
        (s["epoch"].as_u64(), s["batch"].as_u64()),
        (Some(1), Some(4))
    );
}

#[test]
fn refuses_a_taken_port_and_a_remote_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = Dashboard::start(&options(port)).err().unwrap().to_string();
    assert!(
        err.contains("--port") && err.contains(&port.to_string()) && err.contains("in use"),
        "{err}"
    );

    let remote = DashboardOptions {
        address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        allow_remote: false,
    };
    let err = Dashboard::start(&remote).err().unwrap().to_string();
    assert!(
        err.contains("0.0.0.0") && err.contains("--dashboard-allow-remote"),
        "{err}"
    );
}
