//! The node scenarios shared with the browser: `testdata/node-scenarios/*.json`, run here against
//! the core's `node::Node` and in `receiver-web/tests/node-scenarios.test.mjs` against the tab's
//! port, so a rule changed on one side fails on the other until it follows.
//!
//! A scenario is a list of steps. A step may move the clock (`at`: every deadline the node asks
//! for up to `at` fires first, in order, as a driver would), apply one input, compare the outputs
//! gathered since the last comparison (`expect`), and check counters (`stats`). See
//! `testdata/node-scenarios/README.md` for the vocabulary.

use base64::Engine as _;
use bytes::Bytes;
use ownstream_core::frame::{
    self, Chunk, ChunkSigner, Message, SigningKey, StreamKey, FLAG_END, FLAG_INIT, FLAG_KEYFRAME,
};
use ownstream_core::ids::ChunkSeq;
use ownstream_core::node::{ConnectFailure, EdgeId, Ending, Node, NodeConfig, Output};
use ownstream_core::protocol::{ComponentType, ServerMessage, SignalPayload};
use serde_json::{json, Value};
use std::path::PathBuf;

fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/node-scenarios")
}

/// Replaces `$P1`.., `$C1`.., `$KEY`, `$KEY2`, `$SIGNING_KEY`, `$SIGNING_KEY2` in every string of `v`.
fn resolve(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(placeholder(s)),
        Value::Array(a) => Value::Array(a.iter().map(resolve).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), resolve(v))).collect()),
        other => other.clone(),
    }
}

fn placeholder(s: &str) -> String {
    let b64 = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    match s {
        "$KEY" => b64(7),
        "$KEY2" => b64(9),
        "$SIGNING_KEY" => signing_of("$KEY").verifying_key().to_base64(),
        "$SIGNING_KEY2" => signing_of("$KEY2").verifying_key().to_base64(),
        _ if s.len() == 3 && (s.starts_with("$P") || s.starts_with("$C")) => {
            let d = &s[2..];
            if s.starts_with("$P") {
                format!("{0}{0}{0}{0}{0}{0}{0}{0}-{0}{0}{0}{0}-{0}{0}{0}{0}-{0}{0}{0}{0}-{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}", d)
            } else {
                format!("cccccccc-cccc-cccc-cccc-ccccccccccc{d}")
            }
        }
        _ => s.to_string(),
    }
}

/// The broadcaster's signing key of each broadcast (`key`: a placeholder or its value): seed 6
/// for `$KEY2`'s, seed 5 for any other.
fn signing_of(key: &str) -> SigningKey {
    let second = key == "$KEY2" || key == placeholder("$KEY2");
    SigningKey::from_seed(if second { [6; 32] } else { [5; 32] })
}

fn key_of(spec: &Value) -> StreamKey {
    let text = spec
        .get("key")
        .and_then(Value::as_str)
        .map_or_else(|| placeholder("$KEY"), str::to_string);
    StreamKey::from_base64(&text).unwrap()
}

/// A signed chunk from its spec: `{seq, init, keyframe, end, ts, dur, len, tamper, forge, key}`.
fn chunk(spec: &Value) -> Chunk {
    let seq = spec["seq"].as_u64().unwrap();
    let flag = |name: &str, bit: u8| {
        if spec[name].as_bool() == Some(true) {
            bit
        } else {
            0
        }
    };
    let flags = flag("init", FLAG_INIT) | flag("keyframe", FLAG_KEYFRAME) | flag("end", FLAG_END);
    let media = flags & (FLAG_INIT | FLAG_END) == 0;
    let ts = spec["ts"]
        .as_u64()
        .unwrap_or(if media { (seq.max(1) - 1) * 1000 } else { 0 });
    let dur = spec["dur"].as_u64().unwrap_or(if media { 1000 } else { 0 }) as u32;
    let len = spec["len"]
        .as_u64()
        .unwrap_or(if flags & FLAG_END != 0 { 0 } else { 100 });
    let payload = Bytes::from(vec![(seq % 251) as u8; len as usize]);
    let key_name = spec["key"].as_str().unwrap_or("$KEY");
    let signer = ChunkSigner::new("s", key_of(spec), signing_of(key_name));
    let mut c = signer.sign(ChunkSeq(seq), flags, ts, dur, payload);
    if spec["tamper"].as_bool() == Some(true) {
        c.tag[0] ^= 1;
    }
    if spec["forge"].as_bool() == Some(true) {
        // A relay that holds the stream key: altered payload, valid tag, the broadcaster's
        // signature of the original.
        let mut payload = c.payload.to_vec();
        if let Some(b) = payload.first_mut() {
            *b ^= 0xff;
        }
        c.payload = payload.into();
        c.retag(&key_of(spec));
    }
    c
}

fn config(spec: &Value) -> NodeConfig {
    let component = match spec["component"].as_str() {
        Some("broadcaster") => ComponentType::Broadcaster,
        _ => ComponentType::Receiver,
    };
    let mut c = NodeConfig::new(component, spec["stream"].as_str().unwrap_or("s"));
    c.retry_first_connect = spec["retry_first_connect"].as_bool().unwrap_or(false);
    c.list_viewers = spec["list_viewers"].as_bool().unwrap_or(false);
    c.wait_viewers = spec["wait_viewers"].as_u64().unwrap_or(0) as usize;
    c.verify_fraction = spec["verify_fraction"].as_f64().unwrap_or(1.0);
    c.signing_key = Some(signing_of("$KEY").verifying_key());
    c.publish_token = spec["publish_token"].as_str().map(str::to_string);
    c
}

fn ending_kind(e: &Ending) -> &'static str {
    match e {
        Ending::StreamEnded(_) => "stream_ended",
        Ending::Stopped => "stopped",
        Ending::ConnectFailed(_) => "connect_failed",
        Ending::SupervisorLost(_) => "supervisor_lost",
        Ending::Killed(_) => "killed",
        Ending::OutputFailed(_) => "output_failed",
    }
}

/// An output as the scenarios write it; `None` for outputs compared only when watched.
fn output_json(out: &Output, watch: &[String]) -> Option<Value> {
    Some(match out {
        Output::Connect => json!({"connect": {}}),
        Output::Disconnect(_) => json!({"disconnect": {}}),
        Output::Redirect(url) => json!({ "redirect": url }),
        Output::Send(msg) => {
            let v: Value = serde_json::from_str(&msg.encode()).unwrap();
            let kind = match v["type"].as_str() {
                Some("HEARTBEAT") => "heartbeat",
                Some("STATS") => "stats",
                Some("LIST_STREAMS") => "list",
                Some("CLOCK_REQUEST") => "clock",
                Some("STREAM_TIMING") => "timing",
                _ => "",
            };
            if !kind.is_empty() && !watch.iter().any(|w| w == kind) {
                return None;
            }
            json!({ "send": v })
        }
        // `remote_agent` is the Rust driver's alone (a tab cannot choose its packet size).
        Output::OpenEdge {
            edge,
            peer,
            offerer,
            remote_agent: _,
        } => json!({"open_edge": {"edge": edge.0, "peer": peer.to_string(), "offerer": offerer}}),
        Output::SignalEdge { edge, payload } => {
            json!({"signal_edge": {"edge": edge.0, "payload": serde_json::to_value(payload).unwrap()}})
        }
        Output::CloseEdge(edge) => json!({ "close_edge": edge.0 }),
        Output::Transmit { edge, message } => match Message::decode(message.clone()).unwrap() {
            Message::Hello { last } => {
                json!({"transmit": {"edge": edge.0, "hello": last.map(|s| s.0)}})
            }
            Message::Fragment(f) => json!({"transmit": {"edge": edge.0, "fragment":
                {"seq": f.seq.0, "index": f.index, "count": f.count}}}),
            Message::Abort { seq } => json!({"transmit": {"edge": edge.0, "abort": seq.0}}),
            Message::Keepalive if watch.iter().any(|w| w == "keepalive") => {
                json!({"transmit": {"edge": edge.0, "keepalive": true}})
            }
            Message::Keepalive => return None,
        },
        Output::Deliver(c) => json!({ "deliver": c.seq.0 }),
        Output::Ready(_) => json!({"ready": {}}),
        Output::Event(_) => return None,
        Output::Ended(e) => json!({ "ended": ending_kind(e) }),
    })
}

/// `expected` is contained in `actual`: objects by their listed keys, everything else equal.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        // A key expected as null must be absent or null (statistics leave empty lists out).
        (Value::Object(a), Value::Object(e)) => e.iter().all(|(k, ev)| match a.get(k) {
            Some(av) => contains(av, ev),
            None => ev.is_null(),
        }),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(x, y)| contains(x, y))
        }
        (a, e) => a == e,
    }
}

struct Runner {
    node: Node,
    now: u64,
    seen: Vec<Value>,
    watch: Vec<String>,
}

impl Runner {
    fn drain(&mut self) {
        while let Some(out) = self.node.poll_output() {
            if let Some(v) = output_json(&out, &self.watch) {
                self.seen.push(v);
            }
        }
    }

    fn advance(&mut self, to: u64) {
        while let Some(at) = self.node.poll_timeout().filter(|&t| t <= to) {
            self.now = at.max(self.now);
            self.node.handle_timeout(self.now);
            self.drain();
        }
        self.now = to.max(self.now);
    }

    fn input(&mut self, step: &Value) {
        let now = self.now;
        let edge = |v: &Value| EdgeId(v.as_u64().unwrap());
        let n = &mut self.node;
        if let Some(v) = step.get("connected") {
            n.handle_connected(now, v["heartbeat_ms"].as_u64().unwrap_or(1000));
        } else if let Some(v) = step.get("connect_failed") {
            let text = |k: &str| v.get(k).map(|r| r.as_str().unwrap().to_string());
            let f = if let Some(r) = text("refused") {
                ConnectFailure::Refused(r)
            } else if let Some(r) = text("unreachable") {
                ConnectFailure::Unreachable(r)
            } else if let Some(r) = text("busy") {
                ConnectFailure::Busy(r)
            } else {
                panic!("connect_failed needs refused, unreachable or busy: {v}")
            };
            n.handle_connect_failed(now, f);
        } else if let Some(v) = step.get("disconnected") {
            n.handle_disconnected(now, v.as_str().unwrap_or("closed"));
        } else if let Some(v) = step.get("server") {
            let msg: ServerMessage = serde_json::from_value(v.clone()).unwrap();
            n.handle_server(now, msg);
        } else if let Some(v) = step.get("edge_signal") {
            let payload: SignalPayload = serde_json::from_value(v["payload"].clone()).unwrap();
            n.handle_edge_signal(now, edge(&v["edge"]), payload);
        } else if let Some(v) = step.get("edge_open") {
            n.handle_edge_open(now, edge(v));
        } else if let Some(v) = step.get("edge_closed") {
            n.handle_edge_closed(
                now,
                edge(&v["edge"]),
                v["reason"].as_str().unwrap_or("closed"),
            );
        } else if let Some(v) = step.get("edge_bytes") {
            let hex = v["hex"].as_str().unwrap();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            n.handle_edge_message(now, edge(&v["edge"]), Bytes::from(bytes));
        } else if let Some(v) = step.get("edge_hello") {
            let last = v["last"].as_u64().map(ChunkSeq);
            n.handle_edge_message(now, edge(&v["edge"]), Message::Hello { last }.encode());
        } else if let Some(v) = step.get("edge_chunks") {
            for spec in v["chunks"].as_array().unwrap() {
                for m in frame::fragment(&chunk(spec), frame::MAX_MESSAGE).unwrap() {
                    n.handle_edge_message(now, edge(&v["edge"]), m);
                }
            }
        } else if let Some(v) = step.get("edge_fragments") {
            let messages = frame::fragment(&chunk(&v["chunk"]), frame::MAX_MESSAGE).unwrap();
            let from = v["from"].as_u64().unwrap_or(0) as usize;
            let to = v["to"].as_u64().map_or(messages.len(), |t| t as usize);
            for m in &messages[from..to] {
                n.handle_edge_message(now, edge(&v["edge"]), m.clone());
            }
        } else if let Some(v) = step.get("buffered") {
            n.handle_buffered_amount(edge(&v["edge"]), v["bytes"].as_u64().unwrap());
        } else if let Some(v) = step.get("source_chunks") {
            for spec in v.as_array().unwrap() {
                n.handle_source_chunk(now, chunk(spec));
            }
        } else if step.get("stop").is_some() {
            n.handle_stop(now);
        } else if let Some(v) = step.get("output_failed") {
            n.handle_output_failed(now, v.as_str().unwrap_or("disk full"));
        }
        self.drain();
    }
}

fn run(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let scenario = resolve(&serde_json::from_str::<Value>(&text).map_err(|e| e.to_string())?);
    let watch = scenario["watch"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut r = Runner {
        node: Node::new(config(&scenario["config"]), 0),
        now: 0,
        seen: Vec::new(),
        watch,
    };
    r.drain();
    for (i, step) in scenario["steps"].as_array().unwrap().iter().enumerate() {
        if let Some(at) = step["at"].as_u64() {
            r.advance(at);
        }
        r.input(step);
        if let Some(expected) = step.get("expect") {
            let actual = Value::Array(std::mem::take(&mut r.seen));
            if !contains(&actual, expected) {
                return Err(format!(
                    "step {i} (at {} ms): expected {expected}\n  got {actual}",
                    r.now
                ));
            }
        }
        // The player's numbers after the input: the core's model must show them (the tab's
        // runner hands them to its node as the driver's player would).
        if let Some(expected) = step.get("player") {
            let actual = serde_json::to_value(r.node.stats()).unwrap();
            if !contains(&actual, expected) {
                return Err(format!(
                    "step {i}: player {actual} does not match {expected}"
                ));
            }
        }
        if let Some(expected) = step.get("stats") {
            let actual = serde_json::to_value(r.node.stats()).unwrap();
            if !contains(&actual, expected) {
                return Err(format!("step {i}: stats {actual} do not match {expected}"));
            }
        }
    }
    Ok(())
}

#[test]
fn every_shared_node_scenario_passes() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "scenarios missing: {files:?}");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| run(f).err().map(|e| format!("{}: {e}", f.display())))
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
