use super::*;

#[test]
fn request_round_trips() {
    let mut req = request_head("10.244.2.5:8080", 1024, false);
    let len = req.len();
    req.extend_from_slice(&[b'x'; 10]);
    let head = parse_head(&req).unwrap().unwrap();
    assert_eq!(head.header_len, len);
    assert_eq!(
        (head.status, head.content_length, head.close),
        (0, 1024, false)
    );
}

#[test]
fn response_round_trips_with_ip_and_sum() {
    let ip: IpAddr = "10.244.1.4".parse().unwrap();
    let resp = response_head(5, ip, 0xabc, true);
    let head = parse_head(&resp).unwrap().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.client_ip, Some(ip));
    assert_eq!(head.body_fnv, Some(0xabc));
    assert!(head.close);
    assert_eq!(head.content_length, 5);
}

#[test]
fn incomplete_head_needs_more_and_garbage_fails() {
    assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Len"), Ok(None));
    assert!(matches!(
        parse_head(b"hello\r\n\r\n"),
        Err(ProtoError::BadStartLine(_))
    ));
    assert!(matches!(
        parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
        Err(ProtoError::BadValue { .. })
    ));
    assert_eq!(
        parse_head(&vec![b'a'; MAX_HEAD + 1]),
        Err(ProtoError::HeadTooLarge)
    );
}

#[test]
fn sink_lines_round_trip() {
    let ip: IpAddr = "10.244.1.4".parse().unwrap();
    let pre = sink_preamble(ip);
    let (line, used) = take_line(&pre).unwrap();
    assert_eq!(used, pre.len());
    assert_eq!(parse_sink_preamble(line), Ok(ip));
    let tr = sink_trailer(12345, 0xfeed);
    let (line, _) = take_line(&tr).unwrap();
    assert_eq!(parse_sink_trailer(line), Ok((12345, 0xfeed)));
    assert!(take_line(b"no newline").is_none());
    assert!(parse_sink_trailer("12 zz").is_err());
}
