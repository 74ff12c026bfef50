import sys, re, collections
rules = [
 ("publish:Shared::publish", r"runtime::state::Shared::publish"),
 ("apply:decode_all", r"config::xds::decode_all"),
 ("apply:validate", r"validate::check"),
 ("apply:change", r"Snapshot>::change"),
 ("apply:apply_each other", r"apply_each|try_apply"),
 ("apply:other", r"XdsStore::apply\b|apply_and_publish"),
 ("on_response:retire", r"Client::retire"),
 ("on_response:other", r"Client::on_response"),
 ("receive_frame", r"receive_frame"),
 ("record", r"Client::record|Subscription::record"),
 ("ack", r"Subscription::ack"),
 ("send_data/encode", r"send_data|grpc::encode"),
 ("h2 conn: rustls read/decrypt", r"rustls.*(read_tls|process_new_packets|read\b)|poll_fill_buf"),
 ("h2 conn: write/encrypt", r"poll_flush|poll_write|write_tls|flush"),
 ("h2 conn: other", r"h2::proto::connection"),
 ("session loop other", r"Client::session"),
 ("tokio park/epoll", r"park|epoll|Driver::turn"),
 ("tokio sched other", r"tokio::runtime"),
]
rules = [(n, re.compile(p)) for n, p in rules]
counts = collections.Counter(); total = 0
kern = collections.Counter()
def flush(frames):
    global total
    if not frames: return
    total += 1
    # frames: innermost first
    joined = frames
    for n, p in rules:
        if any(p.search(f) for f in joined):
            counts[n] += 1
            break
    else:
        counts["other: " + (frames[-1] if frames else "?")[:60]] += 1
    if frames[0].startswith("[k]"):
        kern[n if False else "kernel-leaf"] += 1
frames = []
for line in open(sys.argv[1]):
    if not line.strip():
        flush(frames); frames = []; continue
    if not line.startswith("\t"):
        continue
    parts = line.strip().split(None, 1)
    sym = parts[1] if len(parts) > 1 else "?"
    if parts[0].startswith("ffffffff"): sym = "[k]" + sym
    frames.append(sym)
flush(frames)
for n, c in counts.most_common(40):
    print(f"{100*c/total:5.1f}% {c:5d} {n}")
print("total", total, "kernel leaf", kern["kernel-leaf"])
