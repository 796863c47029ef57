//! `edge top` as an operator sees it: the real `edge` binary runs `top` in
//! a pseudo-terminal, the screen is rebuilt by a terminal emulator parser
//! (vt100) and read like a person would, while a real edge (with a real
//! broker) takes events and a bot over HTTPS.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_tests::*;
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

const TOPIC: &str = "top-events";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const WAIT: Duration = Duration::from_secs(30);

/// `edge top …` running in a pseudo-terminal, its output fed to a vt100 screen.
struct Tty {
    master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    screen: Arc<Mutex<vt100::Parser>>,
    /// The thread feeding the terminal's output to `screen`; it ends at EOF,
    /// after the child's last output.
    feeder: Option<std::thread::JoinHandle<()>>,
}

impl Tty {
    fn spawn(args: &[&str], rows: u16, cols: u16) -> Tty {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(bin("edge"));
        cmd.arg("top");
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            NonZeroU16::new(rows).unwrap(),
            NonZeroU16::new(cols).unwrap(),
            0,
        )));
        let mut reader = pair.master.try_clone_reader().unwrap();
        let feed = Arc::clone(&screen);
        let feeder = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // ends with EOF/EIO once the child has exited
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                feed.lock().unwrap().process(&buf[..n]);
            }
        });
        let writer = pair.master.take_writer().unwrap();
        Tty {
            master: pair.master,
            writer,
            child,
            screen,
            feeder: Some(feeder),
        }
    }

    /// The screen's text, one line per row.
    fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until `done` holds for the screen; panics with the screen otherwise.
    async fn wait_for(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text();
            if done(&text) {
                return text;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("edge top exited ({status:?}) while waiting for {what}; screen:\n{text}");
            }
            if Instant::now() > deadline {
                panic!("the screen never showed {what} within {WAIT:?}; screen:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn press(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
        self.writer.flush().unwrap();
    }

    fn resize(&mut self, rows: u16, cols: u16) {
        self.screen.lock().unwrap().set_size(
            NonZeroU16::new(rows).unwrap(),
            NonZeroU16::new(cols).unwrap(),
        );
        self.master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
    }

    /// Waits for the process to exit and for the screen to hold all of its
    /// output (its last bytes, such as leaving the alternate screen, may
    /// still be in the pty when it exits); returns whether it exited with 0.
    async fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while self.feeder.as_ref().is_some_and(|f| !f.is_finished()) {
                    assert!(
                        Instant::now() < deadline,
                        "the pty never reached EOF after edge top exited"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if let Some(feeder) = self.feeder.take() {
                    feeder.join().unwrap();
                }
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "edge top did not exit; screen:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The terminal is back to normal: main screen, cursor shown.
    fn assert_restored(&self) {
        let parser = self.screen.lock().unwrap();
        let screen = parser.screen();
        assert!(
            !screen.alternate_screen(),
            "still on the alternate screen after exit"
        );
        assert!(!screen.hide_cursor(), "cursor still hidden after exit");
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The cells of a screen line from the first cell equal to `first` on
/// (panels share lines), split on borders and blanks.
fn row<'a>(screen: &'a str, first: &str) -> Option<Vec<&'a str>> {
    screen.lines().find_map(|line| {
        let cells: Vec<&str> = line
            .split(|c: char| c == '│' || c.is_whitespace())
            .filter(|c| !c.is_empty())
            .collect();
        let at = cells.iter().position(|c| *c == first)?;
        Some(cells[at..].to_vec())
    })
}

/// site, requests, req/s, events, events/s, limited, bots, failed:
/// whether the site's row shows these totals.
fn site_shows(screen: &str, site: &str, requests: &str, events: &str, bots: &str) -> bool {
    row(screen, site).is_some_and(|c| {
        c.len() >= 8 && c[1] == requests && c[3] == events && c[6] == bots && c[7] == "0"
    })
}

async fn post(client: &reqwest::Client, url: &str, body: serde_json::Value, ua: Option<&str>) {
    let mut req = client.post(url).json(&body);
    if let Some(ua) = ua {
        req = req.header("user-agent", ua);
    }
    let status = req.send().await.unwrap().status();
    assert_eq!(status, 202, "{url}");
}

#[tokio::test(flavor = "multi_thread")]
async fn top_shows_a_live_edge_retries_while_it_is_down_resizes_and_quits_cleanly() {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let ports = EdgePorts::pick();
    let admin = format!("http://{}", ports.admin);

    // Nothing listens yet: the screen says so and keeps retrying.
    let mut top = Tty::spawn(&["--admin", &admin], 40, 120);
    top.wait_for("the unreachable admin listener, retried", |s| {
        s.contains(&format!("cannot read {admin}")) && s.contains("2 failed")
    })
    .await;

    // Now the edge comes up on that admin address.
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let ca = TestCa::new();
    let names = ["site1.example", "site2.example"];
    let cert = ca.issue(dir.path(), "sites", &names);
    let edge = EdgeUnderTest::new(dir.path(), &broker.addr, TOPIC, &key)
        .ports(ports)
        .cert(cert)
        .site("s1", &["site1.example"])
        .site("s2", &["site2.example"])
        .start()
        .await;
    let version = edge.admin_config().await["version"]
        .as_str()
        .unwrap()
        .to_string();
    top.wait_for("the edge's config version and readiness", |s| {
        s.contains(&format!("config {version}"))
            && s.contains(" ready ")
            && !s.contains("cannot read")
    })
    .await;

    // Three page views on s1, one batch of two events on s2, one bot on s1…
    let client = ca.client(&names, ports.https);
    let s1 = format!("https://site1.example:{}/api/event", ports.https.port());
    let s2 = format!("https://site2.example:{}/api/event", ports.https.port());
    let view =
        |host: &str| serde_json::json!({"name": "pageview", "url": format!("https://{host}/p")});
    for _ in 0..3 {
        post(&client, &s1, view("site1.example"), None).await;
    }
    post(
        &client,
        &s2,
        serde_json::json!([view("site2.example"), view("site2.example")]),
        None,
    )
    .await;
    post(&client, &s1, view("site1.example"), Some(GOOGLEBOT)).await;
    // …an event without a name (400), and a Host no site serves (421)
    let status = client
        .post(&s2)
        .json(&serde_json::json!({"url": "https://site2.example/p"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 400);
    let status = reqwest::Client::new()
        .post(format!("http://{}/api/event", ports.http))
        .header("host", "nowhere.example")
        .json(&view("nowhere.example"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 421);

    top.wait_for(
        "s1: 4 requests, 3 events, 1 bot; s2: 2 requests, 2 events; 1 without a site",
        |s| {
            site_shows(s, "s1", "4", "3", "1")
                && site_shows(s, "s2", "2", "2", "0")
                && row(s, "(no")
                    .is_some_and(|c| c.get(1) == Some(&"site)") && c.get(2) == Some(&"1"))
        },
    )
    .await;
    // the other panels, read off the same kind of screen
    let screen = top
        .wait_for(
            "the bot and validation drops, answers by class, handshakes and shipped records",
            |s| {
                row(s, "bot")
                    .is_some_and(|c| c.get(1) == Some(&"ua_list") && c.get(2) == Some(&"1"))
                    && row(s, "validation").is_some_and(|c| {
                        c.get(1) == Some(&"missing_field") && c.get(2) == Some(&"1")
                    })
                    && row(s, "2xx").is_some_and(|c| c.get(1) == Some(&"5"))
                    && row(s, "4xx").is_some_and(|c| c.get(1) == Some(&"2"))
                    && row(s, "unknown_host").is_some_and(|c| c.get(1) == Some(&"1"))
                    && row(s, "malformed").is_some_and(|c| c.get(1) == Some(&"1"))
                    && row(s, "ok").is_some_and(|c| c.get(1).is_some_and(|n| *n != "0"))
                    && s.contains("shipped 5 ")
                    && s.contains("kafka ready")
            },
        )
        .await;
    // shown with --nocapture: what the operator saw
    println!("{screen}");
    assert!(screen.contains("rates over the last"), "{screen}");
    assert!(screen.contains("certificates"), "{screen}");

    // A smaller terminal: the screen is laid out again at its new width.
    let border_width = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("┌ sites"))
            .map(|l| l.trim_end().chars().count())
    };
    assert_eq!(border_width(&top.text()), Some(120));
    top.resize(30, 100);
    top.wait_for("the sites table redrawn 100 columns wide", |s| {
        border_width(s) == Some(100) && site_shows(s, "s1", "4", "3", "1")
    })
    .await;

    top.press(b"q");
    assert!(top.wait_exit().await, "edge top did not exit with 0 on q");
    top.assert_restored();

    // --config finds the admin listener; Ctrl-C quits as cleanly.
    let config_path = edge.config_path.display().to_string();
    let mut top = Tty::spawn(&["--config", &config_path], 40, 120);
    top.wait_for("s1's totals through --config", |s| {
        site_shows(s, "s1", "4", "3", "1")
    })
    .await;
    top.press(&[0x03]);
    assert!(
        top.wait_exit().await,
        "edge top did not exit with 0 on Ctrl-C"
    );
    top.assert_restored();
}

#[test]
fn top_refuses_a_stdout_that_is_not_a_terminal() {
    let out = std::process::Command::new(bin("edge"))
        .args(["top", "--admin", "http://127.0.0.1:9"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs a terminal, but stdout is not one")
            && stderr.contains("http://127.0.0.1:9/metrics"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "wrote to a non-terminal stdout");
}

#[tokio::test(flavor = "multi_thread")]
async fn top_sends_the_admin_token_named_by_the_config() {
    use std::os::unix::fs::PermissionsExt;
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "a-long-enough-admin-token\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = EdgeUnderTest::new(dir.path(), &broker.addr, TOPIC, &key)
        .without_https()
        .site("s1", &["site1.example"])
        .admin(&format!(
            "token_file = {:?}",
            token_file.display().to_string()
        ));
    let ports = config.ports;
    let edge = config.start().await;
    let admin = format!("http://{}", ports.admin);

    // Without the token: the 401 and what to do about it, on screen.
    let mut top = Tty::spawn(&["--admin", &admin], 30, 160);
    top.wait_for("the 401 with its hint", |s| {
        s.contains("HTTP 401") && s.contains("--token-file")
    })
    .await;
    top.press(b"q");
    assert!(top.wait_exit().await);
    top.assert_restored();

    // --config names the listener and the token file.
    let status = reqwest::Client::new()
        .post(format!("http://{}/api/event", ports.http))
        .header("host", "site1.example")
        .header("user-agent", BROWSER_UA)
        .json(&serde_json::json!({"name": "pageview", "url": "https://site1.example/"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    let config_path = edge.config_path.display().to_string();
    let mut top = Tty::spawn(&["--config", &config_path], 30, 120);
    top.wait_for("s1's event read with the token", |s| {
        site_shows(s, "s1", "1", "1", "0") && !s.contains("cannot read")
    })
    .await;
    top.press(b"q");
    assert!(top.wait_exit().await);
    top.assert_restored();
}
