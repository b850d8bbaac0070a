#!/usr/bin/env python3
"""cri-run.py SOCKET HANDLER IMAGE LOGDIR -- CMD [ARG...]: run one container
in a pod through a CRI runtime handler, as the kubelet would (RunPodSandbox
with runtime_handler, CreateContainer, StartContainer, ContainerStatus until
it exited, then StopPodSandbox and RemovePodSandbox), and print its exit code
on the last line. The container's log is LOGDIR/c.log (CRI's format).

A small CRI client: the few messages of runtime.v1 it needs are encoded here
by hand (protobuf's wire format, field numbers from the CRI's api.proto), sent
with grpcio's generic calls."""
import sys
import time
import uuid

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, value):
    """A length-delimited field (string, bytes, message) or a varint."""
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint((num << 3) | 2) + varint(len(value)) + value


def msg(*fields):
    return b"".join(field(n, v) for n, v in fields if v is not None)


def read_varint(data, i):
    """(value, next index) of the varint at data[i]"""
    v, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def decode(data):
    """{field: [values]}: varints as int, length-delimited as bytes."""
    out, i = {}, 0
    while i < len(data):
        key, i = read_varint(data, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(data, i)
        elif wt == 2:
            n, i = read_varint(data, i)
            v = data[i : i + n]
            i += n
        elif wt == 5:
            v = data[i : i + 4]
            i += 4
        elif wt == 1:
            v = data[i : i + 8]
            i += 8
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(num, []).append(v)
    return out


def main():
    sock, handler, image, logdir = sys.argv[1:5]
    assert sys.argv[5] == "--"
    cmd = sys.argv[6:]
    ch = grpc.insecure_channel("unix://" + sock)
    call = lambda name, req: ch.unary_unary("/runtime.v1.RuntimeService/" + name)(req, timeout=120)

    uid = uuid.uuid4().hex
    # PodSandboxConfig: metadata(1){name 1, uid 2, namespace 3, attempt 4}, hostname 2, log_directory 3
    pod = msg((1, msg((1, "bxpod"), (2, uid), (3, "default"))), (2, "bxpod"), (3, logdir))
    # RunPodSandboxRequest: config 1, runtime_handler 2
    pod_id = decode(call("RunPodSandbox", msg((1, pod), (2, handler))))[1][0].decode()
    try:
        # ContainerConfig: metadata(1){name 1}, image(2){image 1}, command 3 (repeated), log_path 11,
        # linux 15 {security_context 2 {namespace_options 3 {pid 2: CONTAINER (1), as the kubelet sets}}}
        linux = msg((2, msg((3, msg((2, 1))))))
        cfg = msg((1, msg((1, "c"))), (2, msg((1, image))), *[(3, c) for c in cmd], (11, "c.log"), (15, linux))
        # CreateContainerRequest: pod_sandbox_id 1, config 2, sandbox_config 3
        cid = decode(call("CreateContainer", msg((1, pod_id), (2, cfg), (3, pod))))[1][0].decode()
        call("StartContainer", msg((1, cid)))
        deadline = time.time() + 300
        while time.time() < deadline:
            # ContainerStatusResponse: status 1 {state 3 (2: exited), exit_code 7}
            st = decode(decode(call("ContainerStatus", msg((1, cid))))[1][0])
            if st.get(3, [0])[0] == 2:
                code = st.get(7, [0])[0]
                if code >= 1 << 31:
                    code -= 1 << 64
                call("RemoveContainer", msg((1, cid)))
                print(code, flush=True)
                return
            time.sleep(0.2)
        print("timeout", flush=True)
    finally:
        call("StopPodSandbox", msg((1, pod_id)))
        call("RemovePodSandbox", msg((1, pod_id)))


main()
