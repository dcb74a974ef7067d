"""A small HTTP server that speaks what TRL 1.16's VLLMClient asks of `vllm serve` (trl/generation/
vllm_client.py), generating with an HF model on the CPU, for tests of GRPO's server mode.

Endpoints, as vLLM answers them (with VLLM_SERVER_DEV_MODE=1 and a weight-transfer engine):
GET /health, /v1/models, /server_info, /get_world_size; POST /v1/completions (token-id prompts, n
completions each, prompt-major, `token_ids` and `token_id:<id>` logprobs after temperature and top-p,
stopping at `stop_token_ids` and the model's EOS), /init_weight_transfer_engine, /start_weight_update,
/update_weights, /finish_weight_update, /reset_prefix_cache. Every request is recorded (`requests`).

The one thing that is not vLLM's: the weight transfer. vLLM moves tensors over an NCCL group (CUDA
only); `stub_nccl_weight_transfer` replaces, at TRL's boundary, the two vLLM functions TRL calls for it
(`trainer_init`, `packed_nccl_broadcast_producer`) with a TCP socket carrying the same tensors in the
same order, from the trainer's `vllm_group_port` to this server, which loads them into its model as
vLLM's workers would. Everything else TRL does is TRL's own code against this server.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

# --- the stand-in for vLLM's NCCL weight transfer (both ends) -----------------------------------


def _send(sock: socket.socket, tensor: torch.Tensor) -> None:
    buf = io.BytesIO()
    torch.save(tensor.detach().to("cpu").clone(), buf)
    data = buf.getvalue()
    sock.sendall(struct.pack("!Q", len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("the weight-transfer socket closed mid-tensor")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv(sock: socket.socket) -> torch.Tensor:
    (size,) = struct.unpack("!Q", _recv_exact(sock, 8))
    return torch.load(io.BytesIO(_recv_exact(sock, size)), weights_only=True)


def stub_nccl_weight_transfer(monkeypatch: Any) -> dict[str, Any]:
    """Make TRL's server mode run on a CPU without vLLM: vLLM counts as installed (0.30.0's stateful NCCL
    engine), its NCCL functions are the socket stand-ins above, and the trainer's device is named cuda
    for the one check that refuses others. Returns what the trainer side saw (init_info, tensors sent)."""
    from trl.generation import vllm_client, vllm_generation

    seen: dict[str, Any] = {"init_info": None, "sent": []}

    def trainer_init(init_info: dict[str, Any]) -> Any:
        # rank 0 of the weight-update group: the server's workers join it at master_address:master_port
        seen["init_info"] = init_info
        listener = socket.create_server((init_info["master_address"], init_info["master_port"]))
        listener.settimeout(60)
        conn, _ = listener.accept()
        listener.close()
        return SimpleNamespace(group=SimpleNamespace(store=None, socket=conn))

    def broadcast(iterator: Any, group: Any, src: int, post_iter_func: Any) -> None:
        assert src == 0
        for item in iterator:
            tensor = post_iter_func(item)
            seen["sent"].append((item[0], tuple(tensor.shape)))
            _send(group.group.socket, tensor)

    original = vllm_client.VLLMClient.init_communicator
    monkeypatch.setattr(vllm_client, "is_vllm_available", lambda min_version=None: True)
    monkeypatch.setattr(vllm_generation, "is_vllm_available", lambda min_version=None: True)
    monkeypatch.setattr(vllm_client, "_HAS_STATEFUL_TRAINER_ENGINE", True)
    monkeypatch.setattr(vllm_client, "get_ip", lambda: "127.0.0.1", raising=False)
    monkeypatch.setattr(vllm_client, "open_trainer_endpoint", trainer_init, raising=False)
    monkeypatch.setattr(vllm_client, "packed_nccl_broadcast_producer", broadcast, raising=False)
    # NCCL needs a CUDA device: TRL refuses any other before it opens the group
    monkeypatch.setattr(vllm_client.VLLMClient, "init_communicator",
                        lambda self, device=0: original(self, device="cuda"))
    return seen


# --- the server ----------------------------------------------------------------------------------


class FakeVllmServer(ThreadingHTTPServer):
    """`vllm serve MODEL` on 127.0.0.1 (port 0: a free one), generating with HF on the CPU."""

    daemon_threads = True

    def __init__(self, model: str, served_name: str | None = None, port: int = 0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.model_path = model
        self.served_name = served_name or model
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, JSON body)
        self.generated: list[dict[str, Any]] = []  # each /v1/completions choice, in order
        self.received: list[str] = []  # names of the tensors loaded from the trainer
        self.group: socket.socket | None = None
        self.lock = threading.Lock()  # one generation or weight update at a time, as one vLLM engine
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeVllmServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        self.server_close()
        if self.group is not None:
            self.group.close()

    def calls(self, path: str) -> list[Any]:
        return [body for _, p, body in self.requests if p == path]

    # --- what the endpoints do ---

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.served_name, "object": "model", "root": self.model_path,
                                            "max_model_len": self.model.config.max_position_embeddings}]}

    def server_info(self) -> dict[str, Any]:
        return {"vllm_config": {"weight_transfer_config": {"backend": "nccl"},
                                "model_config": {"model": self.model_path, "logprobs_mode": "processed_logprobs"}}}

    def join_group(self, init_info: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while True:  # the trainer opens the group as this request is in flight
            try:
                self.group = socket.create_connection((init_info["master_address"], init_info["master_port"]))
                return {"status": "ok"}
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def update_weights(self, info: dict[str, Any]) -> dict[str, Any]:
        assert self.group is not None, "/update_weights before /init_weight_transfer_engine"
        params = dict(self.model.named_parameters())
        with self.lock, torch.no_grad():
            for name, dtype, shape in zip(info["names"], info["dtype_names"], info["shapes"], strict=True):
                tensor = _recv(self.group)
                if name not in params or list(params[name].shape) != list(shape) or list(tensor.shape) != shape:
                    raise ValueError(f"cannot load {name} {shape} ({dtype}) into the served model")
                params[name].copy_(tensor)
                self.received.append(name)
        return {"status": "ok"}

    @torch.no_grad()
    def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        n, max_tokens = int(body.get("n", 1)), int(body.get("max_tokens", 16))
        temperature, top_p = float(body.get("temperature", 1.0)), float(body.get("top_p", 1.0))
        top_k = int(body.get("top_k", 0) or 0)
        stops = list(body.get("stop_token_ids") or [])
        eos = self.model.generation_config.eos_token_id
        stops += [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None and e not in stops]
        choices = []
        with self.lock:
            for prompt in body["prompt"]:
                ids = torch.tensor([prompt])
                out = self.model.generate(
                    ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=temperature, top_p=top_p,
                    top_k=top_k or None, max_new_tokens=max_tokens, num_return_sequences=n, eos_token_id=stops,
                    pad_token_id=stops[0], output_scores=True, return_dict_in_generate=True)
                new = out.sequences[:, ids.shape[1]:]
                # vLLM's "processed" logprobs: after temperature and top-p, as the scores are here
                logps = torch.stack([torch.log_softmax(s.float(), dim=-1) for s in out.scores], dim=1)
                for row in range(n):
                    tokens = new[row].tolist()
                    end = next((i + 1 for i, t in enumerate(tokens) if t in stops), len(tokens))
                    tokens = tokens[:end]
                    lps = [float(logps[row, i, t]) for i, t in enumerate(tokens)]
                    choice = {"index": len(choices), "text": self.tokenizer.decode(tokens, skip_special_tokens=True),
                              "token_ids": tokens, "prompt_token_ids": list(prompt),
                              "finish_reason": "stop" if tokens and tokens[-1] in stops else "length",
                              "logprobs": {"tokens": [f"token_id:{t}" for t in tokens], "token_logprobs": lps,
                                           "top_logprobs": [None] * len(tokens)}}
                    choices.append(choice)
        self.generated += choices
        return {"id": f"cmpl-{len(self.generated)}", "object": "text_completion", "model": self.served_name,
                "choices": choices}


class _Handler(BaseHTTPRequestHandler):
    server: FakeVllmServer

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        self.server.requests.append(("GET", path, None))
        answers = {"/health": lambda: {}, "/v1/models": self.server.models, "/server_info": self.server.server_info,
                   "/get_world_size": lambda: {"world_size": 1}}
        if path not in answers:
            return self._reply(404, {"detail": "Not Found"})
        self._reply(200, answers[path]())

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        self.server.requests.append(("POST", path, body))
        s = self.server
        answers = {"/v1/completions": lambda: s.completions(body),
                   "/init_weight_transfer_engine": lambda: s.join_group(body["init_info"]),
                   "/start_weight_update": lambda: {"status": "ok"},
                   "/update_weights": lambda: s.update_weights(body["update_info"]),
                   "/finish_weight_update": lambda: {"status": "ok"},
                   "/reset_prefix_cache": lambda: {"success": True}}
        if path not in answers:
            return self._reply(404, {"detail": "Not Found"})
        try:
            self._reply(200, answers[path]())
        except Exception as exc:  # a test server: the client shows the error; 400, not 500 (TRL retries 5xx)
            self._reply(400, {"error": f"{type(exc).__name__}: {exc}"})  # 500 would make TRL retry
