#!/usr/bin/env python3
"""skelseg's InterAct model in plain PyTorch: the independent check of its arithmetic, a speed
anchor, and a weights bridge.

The modules mirror src/model/* one to one (DSMI, MFAI, action/boundary blocks, QBlocks, FBlocks,
heads; revisions 1 and 2) and carry the same parameter names, so a skelseg checkpoint
(`NAME.safetensors` + `NAME.json`) loads here as a state dict and a state dict saved here loads
in skelseg. Inputs are the three modalities `(N, 6, T, 25)` and a mask `(N, T)`, as
`InterAct::forward_t` takes them; deriving modalities from skeleton files stays in skelseg.

Only torch is needed (the venv `make setup` creates): safetensors files are read and written
with json + struct, since the `safetensors` package is not installed there.

Commands (all print one JSON object on stdout with --json):
  check   compare with outputs skelseg wrote (`--io` file with inputs and expected outputs)
  export  write a twin model (fresh torch initialisation or a loaded checkpoint) as a skelseg
          checkpoint, plus an --io file with its outputs on a fixed input for skelseg to check
  time    the researcher's loop (full model per window, hop 1, batch 1) against the twin's best
          sliding loop (DSMI once per frame, cached; MFAI per window every --hop frames)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import struct
import sys
import time
import warnings
from collections import deque
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

FORMAT = "skelseg-checkpoint/1"
MASKED_BIAS = -1e9

# ---------------------------------------------------------------------------------------------
# safetensors without the safetensors package

_DTYPES = {
    "F32": torch.float32,
    "F64": torch.float64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "U8": torch.uint8,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """All tensors of a .safetensors file (little-endian u64 header length, JSON header, data)."""
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(raw[8 : 8 + n])
    data = memoryview(raw)[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        dtype, shape = _DTYPES[info["dtype"]], info["shape"]
        begin, end = info["data_offsets"]
        numel = math.prod(shape)
        if end - begin != numel * torch.empty((), dtype=dtype).element_size():
            raise ValueError(f"{path}: tensor {name}: {end - begin} bytes for shape {shape}")
        if numel == 0:
            out[name] = torch.empty(shape, dtype=dtype)
        else:
            buf = bytearray(data[begin:end])
            out[name] = torch.frombuffer(buf, dtype=dtype).reshape(shape).clone()
    return out


def write_safetensors(path: Path, tensors: dict[str, Tensor]) -> None:
    """Writes tensors (contiguous, little-endian, names sorted) as a .safetensors file."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        blob = ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())
        header[name] = {
            "dtype": _NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


# ---------------------------------------------------------------------------------------------
# Skeleton graph (src/skeleton/graph.rs, kinect_v2.rs)

BONES = [
    (0, 1), (1, 20), (20, 2), (2, 3), (20, 4), (4, 5), (5, 6), (6, 7), (7, 21), (6, 22),
    (20, 8), (8, 9), (9, 10), (10, 11), (11, 23), (10, 24), (0, 12), (12, 13), (13, 14),
    (14, 15), (0, 16), (16, 17), (17, 18), (18, 19),
]  # fmt: skip


def k_hop_adjacency(scales: int, v: int = 25) -> Tensor:
    """`(scales·V, V)`: Â_0 = I; Â_k links joints exactly k hops apart plus self loops,
    normalised D^-1/2 A D^-1/2 (computed in float64, stored as float32 like skelseg)."""
    nbrs = [[] for _ in range(v)]
    for a, b in BONES:
        nbrs[a].append(b)
        nbrs[b].append(a)
    dist = []
    for src in range(v):
        d = [None] * v
        d[src] = 0
        queue = deque([src])
        while queue:
            at = queue.popleft()
            for nxt in nbrs[at]:
                if d[nxt] is None:
                    d[nxt] = d[at] + 1
                    queue.append(nxt)
        dist.append(d)
    mats = []
    for k in range(scales):
        a = torch.tensor(
            [[1.0 if (i == j if k == 0 else dist[i][j] == k or i == j) else 0.0 for j in range(v)]
             for i in range(v)],
            dtype=torch.float64,
        )  # fmt: skip
        inv = a.sum(1).pow(-0.5)
        mats.append(inv[:, None] * a * inv[None, :])
    return torch.cat(mats, 0).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# Building blocks (src/model/attention.rs)


class MaskedBatchNorm(nn.Module):
    """BatchNorm over valid frames only; eval uses the running statistics."""

    momentum, eps = 0.1, 1e-5

    def __init__(self, c: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        shape = [1, -1] + [1] * (x.dim() - 2)
        if self.training:
            dims = [d for d in range(x.dim()) if d != 1]
            one = list(x.shape)
            one[1] = 1
            m = mask.expand(one).to(x.dtype) if mask is not None else x.new_ones(one)
            count = m.sum().clamp_min(1.0)
            mean = (x * m).sum(dims, keepdim=True) / count
            var = ((x - mean).square() * m).sum(dims, keepdim=True) / count
            with torch.no_grad():
                unbiased = var * count / (count - 1.0).clamp_min(1.0)
                self.running_mean.mul_(1 - self.momentum).add_(mean.view(-1) * self.momentum)
                self.running_var.mul_(1 - self.momentum).add_(unbiased.view(-1) * self.momentum)
        else:
            mean, var = self.running_mean.view(shape), self.running_var.view(shape)
        return (x - mean) / (var + self.eps).sqrt() * self.weight.view(shape) + self.bias.view(
            shape
        )


class MultiHeadAttention(nn.Module):
    """q/k/v/out projections, scaled dot-product attention, additive -1e9 on padded keys."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.heads = heads

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None) -> Tensor:
        n, l, e = q.shape
        s, h = k.shape[1], self.heads

        def split(x: Tensor, length: int) -> Tensor:
            return x.view(n, length, h, e // h).transpose(1, 2)

        bias = None if key_mask is None else ((1.0 - key_mask) * MASKED_BIAS).view(n, 1, 1, s)
        o = F.scaled_dot_product_attention(
            split(self.q(q), l), split(self.k(k), s), split(self.v(v), s), attn_mask=bias
        )
        return self.out(o.transpose(1, 2).reshape(n, l, e))


class LinearAttention(nn.Module):
    """DeST linear attention, φ = sigmoid, padded keys/values zeroed. Tokens `(N, T, C)`."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.heads, self.dropout = heads, dropout

    def forward(self, q: Tensor, kv: Tensor, mask: Tensor) -> Tensor:
        n, t, c = q.shape
        h = self.heads

        def split(x: Tensor) -> Tensor:
            return x.view(n, t, h, c // h).transpose(1, 2)

        phi_q = split(self.q(q).sigmoid())
        phi_k = split(self.k(kv).sigmoid() * mask)
        v = split(self.v(kv) * mask)
        kv_sum = phi_k.transpose(2, 3) @ v
        z = (phi_q * phi_k.sum(2, keepdim=True)).sum(3, keepdim=True) + 1e-6
        o = (phi_q @ kv_sum / z).transpose(1, 2).reshape(n, t, c)
        return F.dropout(self.out(o), self.dropout, self.training) * mask


def masked_instance_norm(x: Tensor, mask: Tensor) -> Tensor:
    count = mask.sum(2, keepdim=True).clamp_min(1.0)
    mean = (x * mask).sum(2, keepdim=True) / count
    centred = (x - mean) * mask
    var = centred.square().sum(2, keepdim=True) / count
    return centred / (var + 1e-5).sqrt()


def channel_dropout(x: Tensor, p: float, train: bool) -> Tensor:
    if not train or p <= 0.0:
        return x
    keep = torch.empty(x.shape[0], x.shape[1], 1, dtype=x.dtype, device=x.device).bernoulli_(1 - p)
    return x * keep / (1 - p)


def sincos_pe(t: int, dim: int, device) -> Tensor:
    pos = torch.arange(t, dtype=torch.float32, device=device).unsqueeze(1)
    j = torch.arange(dim // 2, dtype=torch.float32, device=device)
    inv_freq = (j * (-2.0 * math.log(10000.0) / dim)).exp().unsqueeze(0)
    angle = pos * inv_freq
    return torch.stack([angle.sin(), angle.cos()], 2).view(t, dim) / math.sqrt(dim)


# ---------------------------------------------------------------------------------------------
# DSMI (src/model/dsmi.rs)


class MultiScaleGcn(nn.Module):
    def __init__(self, cfg: dict, adj: Tensor):
        super().__init__()
        k, v, c, d = cfg["scales"], cfg["joints"], cfg["in_channels"], cfg["hidden"]
        self.register_buffer("adj", adj, persistent=False)
        self.A_res = nn.Parameter(torch.empty(k * v, v).uniform_(-1e-6, 1e-6))
        self.conv = nn.Conv2d(k * c, d, 1)
        self.bn = MaskedBatchNorm(d)
        self.scales = k

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        n, c, t, v = x.shape
        agg = x @ (self.adj + self.A_res).t()  # (N, C, T, K·V)
        agg = agg.view(n, c, t, self.scales, v).permute(0, 3, 1, 2, 4).reshape(n, -1, t, v)
        return self.bn(self.conv(agg), mask).relu()


class JointFusion(nn.Module):
    def __init__(self, width: int, dim: int, heads: int):
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.attn = MultiHeadAttention(width, heads)
        self.fc1, self.fc2 = nn.Linear(width, dim), nn.Linear(dim, dim)

    def forward(self, z: Tensor) -> Tensor:
        zn = self.ln(z)
        z = z + self.attn(zn, zn, zn)
        return self.fc2(self.fc1(z).relu())


class Dsmi(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d, v, c = cfg["hidden"], cfg["joints"], cfg["in_channels"]
        self.spatial, self.d = cfg["spatial"], d
        if self.spatial in ("dsmi", "concat"):
            adj = k_hop_adjacency(cfg["scales"], v)
            self.gcn = nn.ModuleDict({m: MultiScaleGcn(cfg, adj) for m in ("abs", "rel", "motion")})
            self.collapse = nn.Linear(v * d, d)
        if self.spatial == "dsmi":
            self.fuse_abs_rel = JointFusion(2 * d, d, cfg["heads"])
            self.fuse_motion = JointFusion(2 * d, d, cfg["heads"])
        elif self.spatial == "concat":
            self.concat = nn.ModuleDict({"fc1": nn.Linear(3 * d, d), "fc2": nn.Linear(d, d)})
        elif self.spatial == "none":
            self.embed = nn.Linear(3 * c * v, d)
        else:
            raise ValueError(f"unknown spatial variant {self.spatial!r}")

    def forward(self, abs_: Tensor, rel: Tensor, motion: Tensor, mask: Tensor | None) -> Tensor:
        """Three `(N, C, T, V)` → `(N, D, T)`; `mask (N, T)` only matters in training."""
        n, _, t, v = abs_.shape
        d = self.d
        if self.spatial == "none":
            x = torch.cat([abs_, rel, motion], 1).permute(0, 2, 1, 3).reshape(n, t, -1)
            return self.embed(x).transpose(1, 2).contiguous()
        m = None if mask is None else mask.view(n, 1, t, 1)
        sa, sr, sm = (
            self.gcn[name](x, m).permute(0, 2, 3, 1).reshape(n * t, v, d)
            for name, x in (("abs", abs_), ("rel", rel), ("motion", motion))
        )
        if self.spatial == "dsmi":
            x = self.fuse_abs_rel(torch.cat([sa, sr], 2))
            x = self.fuse_motion(torch.cat([x, sm], 2))
        else:
            x = self.concat["fc2"](self.concat["fc1"](torch.cat([sa, sr, sm], 2)).relu())
        return self.collapse(x.reshape(n, t, v * d)).transpose(1, 2).contiguous()


# ---------------------------------------------------------------------------------------------
# MFAI (src/model/asformer.rs, action_block.rs, boundary_block.rs, query.rs, mfai.rs)


class SlidingAttention(nn.Module):
    def __init__(self, dim: int, block: int):
        super().__init__()
        self.query_conv = nn.Conv1d(dim, dim // 2, 1)
        self.key_conv = nn.Conv1d(dim, dim // 2, 1)
        self.value_conv = nn.Conv1d(dim, dim // 2, 1)
        self.conv_out = nn.Conv1d(dim // 2, dim, 1)
        self.block = block

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        n, _, l = x.shape
        bl = self.block
        half, nb = bl // 2, -(-l // bl)
        right, win = nb * bl - l, bl + 2 * (bl // 2)
        q, k, v = self.query_conv(x), self.key_conv(x), self.value_conv(x)
        c = q.shape[1]
        q = F.pad(q, (0, right)).view(n, c, nb, bl).permute(0, 2, 3, 1)

        def windows(t: Tensor) -> Tensor:
            return F.pad(t, (half, right + half)).unfold(2, win, bl)

        k = windows(k).permute(0, 2, 1, 3)
        v = windows(v).permute(0, 2, 3, 1)
        pmask = windows(mask).permute(0, 2, 1, 3)
        visible = min(2 * bl - 1, win)
        wmask = torch.cat([x.new_ones(visible), x.new_zeros(win - visible)])
        keep = pmask * wmask
        energy = q @ k / math.sqrt(c) + (keep - 1.0) * 1e9
        att = energy.softmax(-1) * keep
        o = (att @ v).permute(0, 3, 1, 2).reshape(n, c, nb * bl)[:, :, :l]
        return self.conv_out(o.relu()) * mask


class AsformerLayer(nn.Module):
    def __init__(self, dim: int, dilation: int, dropout: float):
        super().__init__()
        self.feed_forward = nn.Conv1d(dim, dim, 3, padding=dilation, dilation=dilation)
        self.att_layer = SlidingAttention(dim, dilation)
        self.conv_1x1 = nn.Conv1d(dim, dim, 1)
        self.dropout = dropout

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = self.feed_forward(x).relu()
        out = self.att_layer(masked_instance_norm(out, mask), mask) + out
        out = F.dropout(self.conv_1x1(out), self.dropout, self.training)
        return (x + out) * mask


class EncoderLayer(nn.Module):
    def __init__(self, d: int, level: int, dropout: float):
        super().__init__()
        self.down = nn.Conv1d(d, d, 3, stride=2, padding=1, groups=d, bias=False)
        self.asformer = AsformerLayer(d, 1 << level, dropout)


class ConvBlock(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv1d(2 * d, d, 5, padding=2), MaskedBatchNorm(d)
        self.conv2, self.bn2 = nn.Conv1d(d, d, 5, padding=2), MaskedBatchNorm(d)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.bn1(self.conv1(x), mask).relu() * mask
        return self.bn2(self.conv2(h), mask).relu() * mask


class LinearAttModule(nn.Module):
    def __init__(self, cfg: dict, dilation: int):
        super().__init__()
        d = cfg["hidden"]
        self.feed_forward = nn.Conv1d(d, d, 3, padding=dilation, dilation=dilation)
        self.att_layer = LinearAttention(d, cfg["heads"], cfg["attention_dropout"])
        self.conv_1x1 = nn.Conv1d(d, d, 1)
        self.dropout = cfg["layer_dropout"]

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = self.feed_forward(x).relu()
        q = masked_instance_norm(out, mask).transpose(1, 2)
        att = self.att_layer(q, q, mask.transpose(1, 2)).transpose(1, 2)
        out = F.dropout(self.conv_1x1(att + out), self.dropout, self.training)
        return (x + out) * mask


class ActionBlock(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["hidden"]
        self.conv_in, self.conv_out = nn.Conv1d(d, d, 1), nn.Conv1d(d, d, 1)
        self.layers = nn.ModuleList(
            LinearAttModule(cfg, 1 << i) for i in range(cfg["action_layers"])
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.conv_in(x) * mask
        for layer in self.layers:
            h = layer(h, mask)
        return self.conv_out(h) * mask


class DilatedResidual(nn.Module):
    def __init__(self, d: int, dilation: int, dropout: float):
        super().__init__()
        self.conv_dilated = nn.Conv1d(d, d, 3, padding=dilation, dilation=dilation)
        self.conv_1x1 = nn.Conv1d(d, d, 1)
        self.dropout = dropout

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = F.dropout(self.conv_1x1(self.conv_dilated(x).relu()), self.dropout, self.training)
        return (x + out) * mask


class BoundaryBlock(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d, l = cfg["hidden"], cfg["boundary_layers"]
        self.conv_in = nn.Conv1d(d, d, 1)
        self.layers = nn.ModuleList(
            DilatedResidual(d, 1 << i, cfg["layer_dropout"]) for i in range(l)
        )
        self.prelu = nn.Parameter(torch.full((l * d,), 0.25))
        self.fuse = nn.Conv1d(l * d, d, 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        f0 = self.conv_in(x) * mask
        outs = []
        for layer in self.layers:
            outs.append(layer(f0 if not outs else f0 + outs[-1], mask))
        h = F.prelu(torch.cat(outs, 1), self.prelu)
        return (self.fuse(h) + f0) * mask


class QBlock(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln_self, self.ln_cross, self.ln_ffn = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = MultiHeadAttention(d, heads)
        self.cross_attn = MultiHeadAttention(d, heads)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, q: Tensor, pe: Tensor, frames: Tensor, mask: Tensor) -> Tensor:
        _, d, t = frames.shape
        qn = self.ln_self(q)
        qk = qn + pe
        q = q + self.self_attn(qk, qk, qn)
        qn = self.ln_cross(q)
        f = frames.transpose(1, 2)
        fk = f + sincos_pe(t, d, frames.device).unsqueeze(0)
        q = q + self.cross_attn(qn + pe, fk, f, mask.squeeze(1))
        return q + self.fc2(self.fc1(self.ln_ffn(q)).relu())


class Embed(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(d, d // 4), nn.Linear(d // 4, d), nn.Linear(d, d)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(self.fc2(self.fc1(x).relu()).relu())


class FBlock(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln_a, self.ln_b = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn_a, self.attn_b = MultiHeadAttention(d, heads), MultiHeadAttention(d, heads)

    @staticmethod
    def attend(ln, attn, f: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        ft = f.transpose(1, 2)
        return (ft + attn(ln(ft), keys, keys)).transpose(1, 2) * mask


class QueryDecoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d, a, h = cfg["hidden"], cfg["num_classes"], cfg["query_scales"]
        self.query = nn.Parameter(torch.randn(a + 1, d))
        self.query_pe = nn.Parameter(torch.randn(a + 1, d))
        self.qblocks = nn.ModuleList(QBlock(d, cfg["heads"]) for _ in range(h))
        self.norm_action, self.norm_boundary, self.norm_query = (nn.LayerNorm(d) for _ in range(3))
        self.chained = cfg["revision"] >= 2
        if self.chained:
            self.fblocks = nn.ModuleList(FBlock(d, cfg["heads"]) for _ in range(h))
        else:
            self.fblock = FBlock(d, cfg["heads"])
        self.embed_action, self.embed_boundary = Embed(d), Embed(d)
        self.num_classes, self.logit_scale = a, 1.0 / math.sqrt(d)

    def forward(self, levels, f_a: Tensor, f_b: Tensor, mask: Tensor):
        n, a = f_a.shape[0], self.num_classes
        q = self.query.unsqueeze(0).expand(n, -1, -1)
        pe = self.query_pe.unsqueeze(0)

        def channel_norm(ln, f):
            return ln(f.transpose(1, 2)).transpose(1, 2) * mask

        f_a, f_b = channel_norm(self.norm_action, f_a), channel_norm(self.norm_boundary, f_b)
        stages = []
        for r, (block, (frames, level_mask)) in enumerate(zip(self.qblocks, levels)):
            q = block(q, pe, frames, level_mask)
            qn = self.norm_query(q)
            q_a, q_b = qn[:, :a], qn[:, a : a + 1]
            fb_ = self.fblocks[r] if self.chained else self.fblock
            fa = FBlock.attend(fb_.ln_a, fb_.attn_a, f_a, q_a, mask)
            fb = FBlock.attend(fb_.ln_b, fb_.attn_b, f_b, qn, mask)
            action = self.embed_action(q_a) @ fa * self.logit_scale
            boundary = (self.embed_boundary(q_b) @ fb * self.logit_scale).squeeze(1)
            stages.append((action, boundary))
            if self.chained:
                f_a, f_b = fa, fb
        return stages


def upsample2(x: Tensor, mask: Tensor) -> Tensor:
    """Revision 2: coarse sample i on fine frame 2i; 2i+1 averages the valid of i, i+1."""
    n, c, l = x.shape
    nxt = F.pad(x[:, :, 1:], (0, 1))
    nxt_mask = F.pad(mask[:, :, 1:], (0, 1))
    odd = (x + nxt) / (mask + nxt_mask).clamp_min(1.0)
    return torch.stack([x, odd], 3).view(n, c, 2 * l)


def upsample2_half_pixel(x: Tensor) -> Tensor:
    """Revision 1: half-pixel linear interpolation, zero beyond the last frame."""
    l = x.shape[2]
    up = F.interpolate(F.pad(x, (0, 1)), size=2 * (l + 1), mode="linear", align_corners=False)
    return up[:, :, : 2 * l]


class Mfai(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["hidden"]
        self.input = nn.Conv1d(d, d, 1)
        self.encoder = nn.ModuleList(
            EncoderLayer(d, lvl, cfg["layer_dropout"]) for lvl in range(cfg["encoder_layers"])
        )
        self.decoder = nn.ModuleList(ConvBlock(d) for _ in range(cfg["decoder_layers"]))
        self.action_block = ActionBlock(cfg)
        self.boundary_block = BoundaryBlock(cfg)
        self.queries = QueryDecoder(cfg)
        self.temporal, self.h = cfg["temporal"], cfg["query_scales"]
        self.channel_dropout, self.revision = cfg["channel_dropout"], cfg["revision"]

    def forward(self, x: Tensor, mask: Tensor):
        """`x (N, D, T)`, `mask (N, 1, T)`, T a multiple of 2^encoder_layers."""
        x = channel_dropout(x, self.channel_dropout, self.training)
        masks, skips = [mask], [self.input(x) * mask]
        for layer in self.encoder:
            m = masks[-1][:, :, ::2]
            e = layer.down(skips[-1]) * m
            skips.append(layer.asformer(e, m))
            masks.append(m)
        levels = len(self.encoder)
        u, outputs = skips[levels], []
        for j, block in enumerate(self.decoder):
            at = levels - 1 - j
            up = upsample2(u, masks[at + 1]) if self.revision >= 2 else upsample2_half_pixel(u)
            u = block(torch.cat([skips[at], up * masks[at]], 1), masks[at])
            outputs.append((u, masks[at]))
        f_a = self.action_block(u, mask)
        f_b = self.boundary_block(u, mask)
        if self.temporal == "mfai":
            end = len(outputs) - 1 if self.revision >= 2 else len(outputs)
            used = outputs[end - self.h : end]
        else:
            used = [(u, mask)] * self.h
        return self.queries(used, f_a, f_b, mask)


class InterAct(nn.Module):
    """DSMI + MFAI with skelseg's parameter names (`dsmi.*`, `mfai.*`)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.dsmi = Dsmi(cfg)
        self.mfai = Mfai(cfg)

    def run_mfai(self, feats: Tensor, mask: Tensor):
        """`feats (N, D, T)`, `mask (N, T)` → [(action (N, A, T), boundary (N, T))] per stage."""
        n, _, t = feats.shape
        m = 1 << self.cfg["encoder_layers"]
        padded = -(-t // m) * m
        mask = F.pad(mask.to(feats.dtype), (0, padded - t)).view(n, 1, padded)
        feats = F.pad(feats, (0, padded - t)) * mask
        return [(a[:, :, :t], b[:, :t]) for a, b in self.mfai(feats, mask)]

    def forward(self, abs_: Tensor, rel: Tensor, motion: Tensor, mask: Tensor):
        feats = self.dsmi(abs_, rel, motion, mask.to(abs_.dtype))
        return self.run_mfai(feats, mask)


# ---------------------------------------------------------------------------------------------
# Checkpoints

DEFAULTS = {
    "in_channels": 6, "joints": 25, "hidden": 64, "heads": 4, "scales": 13, "num_classes": 52,
    "encoder_layers": 6, "decoder_layers": 6, "query_scales": 3, "action_layers": 10,
    "boundary_layers": 10, "spatial": "dsmi", "temporal": "mfai", "channel_dropout": 0.3,
    "layer_dropout": 0.5, "attention_dropout": 0.05, "boundary_threshold": 0.5,
    "boundary_radius": 10, "boundary_sigma": 6.0, "revision": 1, "input_norm": "camera",
    "temperature": 1.0,
}  # fmt: skip


def model_config(meta: dict) -> dict:
    """The checkpoint JSON's `model` with skelseg's serde defaults filled in (a missing revision
    is revision 1, as in skelseg)."""
    return {**DEFAULTS, **meta["model"]}


def load(path: Path) -> tuple[InterAct, dict]:
    """Loads `NAME.safetensors` + `NAME.json`; every name and shape must match (as skelseg)."""
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    if meta.get("format", FORMAT) != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    model = InterAct(model_config(meta))
    stored = read_safetensors(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    if missing or extra:
        raise ValueError(f"{path}: missing tensors {missing[:5]}, unexpected {extra[:5]}")
    for name, t in expected.items():
        if stored[name].shape != t.shape:
            raise ValueError(
                f"{path}: {name} is {list(stored[name].shape)}, expected {list(t.shape)}"
            )
    model.load_state_dict(stored)
    return model.eval(), meta


def _crate_version() -> str:
    """The version in the checkout's Cargo.toml (the twin lives in python/ beside it)."""
    toml = Path(__file__).resolve().parent.parent / "Cargo.toml"
    for line in toml.read_text().splitlines() if toml.exists() else []:
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def save(
    path: Path, model: InterAct, classes: list[str], layout: str = "kinect_v2", **data
) -> None:
    """Writes a skelseg checkpoint: the state dict under skelseg's names + the JSON."""
    path = Path(path)
    if len(classes) != model.cfg["num_classes"]:
        raise ValueError(f"{len(classes)} class names for {model.cfg['num_classes']} classes")
    write_safetensors(path, {k: v.float() for k, v in model.state_dict().items()})
    meta = {
        "format": FORMAT,
        "model": model.cfg,
        "classes": classes,
        "layout": layout,
        "data": data or None,
        "command": " ".join(sys.argv),
        "skelseg_version": _crate_version(),
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# The fixed input both sides use and the comparison


def fixed_input(cfg: dict, n: int, t: int, valid: int, seed: int) -> dict[str, Tensor]:
    """Modalities and a mask with the last `t - valid` frames of the last sequence padded."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, cfg["in_channels"], t, cfg["joints"])
    io = {name: torch.randn(shape, generator=g) * 0.5 for name in ("abs", "rel", "motion")}
    mask = torch.ones(n, t)
    mask[-1, valid:] = 0.0
    io["mask"] = mask
    return io


@torch.inference_mode()
def outputs(model: InterAct, io: dict[str, Tensor]) -> dict[str, Tensor]:
    """`feats` (DSMI alone, as InterAct::dsmi) and every stage's logits of the full model."""
    out = {"feats": model.dsmi(io["abs"], io["rel"], io["motion"], None)}
    for i, (a, b) in enumerate(model(io["abs"], io["rel"], io["motion"], io["mask"])):
        out[f"stage{i}.action"], out[f"stage{i}.boundary"] = a, b
    return out


def compare(got: dict[str, Tensor], want: dict[str, Tensor], mask: Tensor) -> dict[str, dict]:
    """Per output: the largest absolute difference over valid frames (padded frames' logits are
    unspecified), the output's scale (largest |value|, at least 1) and their ratio. The ratio is
    what the tolerance bounds: DSMI features reach several hundred, where float32 alone (this twin
    against itself in float64) differs by a few 1e-4."""
    diffs = {}
    for name, w in want.items():
        if name not in got:
            raise ValueError(f"output {name} missing")
        g = got[name]
        if g.shape != w.shape:
            raise ValueError(f"output {name}: shape {list(g.shape)} vs {list(w.shape)}")
        valid = torch.ones_like(w, dtype=torch.bool)
        if name != "feats":
            m = mask.bool()
            valid = m.unsqueeze(1).expand_as(w) if w.dim() == 3 else m
        delta = (g - w).abs()[valid].max().item()
        scale = max(1.0, w.abs()[valid].max().item())
        diffs[name] = {"abs": delta, "scale": scale, "rel": delta / scale}
    return diffs


# ---------------------------------------------------------------------------------------------
# Timing


@torch.inference_mode()
def time_loops(
    model: InterAct, window: int, hop: int, frames: int, reps: int, device="cpu"
) -> dict:
    """ms per frame, median and range over `reps` repeats, batch 1, after a full window:
    - the researcher's loop: the full model on the last `window` frames at every frame (hop 1);
    - the twin's best sliding loop: DSMI once per arriving frame (cached), MFAI on the cached
      window every `hop` frames."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    total = window + frames
    x = (torch.randn(1, cfg["in_channels"], total, cfg["joints"], generator=g) * 0.5).to(device)
    mask = torch.ones(1, window, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    researcher_frames = min(frames, 8)  # seconds per frame: a few frames tell

    def researcher():
        for t in range(window, window + researcher_frames):
            w = x[:, :, t - window : t]
            model(w, w, w, mask)
        return researcher_frames

    prefill = model.dsmi(x[:, :, :window], x[:, :, :window], x[:, :, :window], None)

    def sliding():
        feats = deque(prefill.split(1, 2), maxlen=window)
        for t in range(window, total):
            f = x[:, :, t : t + 1]
            feats.append(model.dsmi(f, f, f, None))
            if (t - window) % hop == 0:
                model.run_mfai(torch.cat(list(feats), 2), mask)
        return frames

    def run(fn) -> dict:
        fn()  # warm-up
        times = []
        for _ in range(reps):
            sync()
            start = time.perf_counter()
            n = fn()
            sync()
            times.append((time.perf_counter() - start) * 1e3 / n)
        times.sort()
        return {"median": times[len(times) // 2], "min": times[0], "max": times[-1]}

    r, s = run(researcher), run(sliding)
    return {
        "window_frames": window,
        "hop_frames": hop,
        "researcher_ms_per_frame": r,
        "sliding_ms_per_frame": s,
        "sliding_speedup": r["median"] / s["median"],
    }


def time_batched(
    model: InterAct, window: int, hop: int, batches: list[int], reps: int, device
) -> list[dict]:
    """One step of B streams at once (DSMI on each stream's new frame, MFAI on each stream's
    cached window), ms per step; at hop `hop` and 30 fps a stream needs 30 / hop windows per
    second, so a step of S ms serves B·1000·hop / (30·S) streams, at a latency of S ms."""
    cfg, out = model.cfg, []
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for b in batches:
        frame = torch.randn(b, cfg["in_channels"], 1, cfg["joints"], device=device) * 0.5
        feats = torch.randn(b, cfg["hidden"], window, device=device)
        mask = torch.ones(b, window, device=device)

        def step():
            model.dsmi(frame, frame, frame, None)
            model.run_mfai(feats, mask)

        step()
        times = []
        for _ in range(reps):
            sync()
            start = time.perf_counter()
            step()
            sync()
            times.append((time.perf_counter() - start) * 1e3)
        times.sort()
        ms = times[len(times) // 2]
        out.append({"streams": b, "ms_per_step": {"median": ms, "min": times[0], "max": times[-1]},
                    "streams_served": b * 1000.0 * hop / (30.0 * ms)})  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# CLI


def cmd_check(args) -> int:
    model, _ = load(args.model)
    io = read_safetensors(args.io)
    want = {k: v for k, v in io.items() if k == "feats" or k.startswith("stage")}
    if not want:
        raise ValueError(f"{args.io}: no outputs (feats, stageN.action, stageN.boundary)")
    got = outputs(model, io)
    diffs = compare(got, want, io["mask"])
    worst = max(d["rel"] for d in diffs.values())
    ok = worst <= args.tol
    report = {"model": str(args.model), "max_rel_diff": worst, "tolerance": args.tol, "ok": ok,
              "per_output": diffs}  # fmt: skip
    if args.json:
        print(json.dumps(report))
    else:
        for name, d in diffs.items():
            print(f"{name:20s} max |Δ| {d['abs']:.3e} (scale {d['scale']:.1f}, {d['rel']:.2e})")
        print(f"{'OK' if ok else 'MISMATCH'}: max |Δ|/scale {worst:.3e} (tolerance {args.tol:g})")
    return 0 if ok else 1


def cmd_export(args) -> int:
    if args.model:
        model, meta = load(args.model)
        classes = meta["classes"]
    else:
        cfg = {**DEFAULTS, "revision": 2, "input_norm": "body", "num_classes": args.classes}
        cfg.update(json.loads(args.config) if args.config else {})
        torch.manual_seed(args.seed)
        model = InterAct(cfg)
        with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
            for mod in model.modules():
                if isinstance(mod, MaskedBatchNorm):
                    mod.running_mean.normal_(0.0, 0.1)
                    mod.running_var.uniform_(0.5, 2.0)
        model.eval()
        classes = [f"class_{i}" for i in range(cfg["num_classes"])]
    save(args.out, model, classes, source="skelseg_twin export")
    if args.io:
        io = fixed_input(model.cfg, 2, args.frames, args.frames - 7, args.seed)
        io.update(outputs(model, io))
        write_safetensors(args.io, io)
    print(json.dumps({"out": str(args.out), "io": str(args.io) if args.io else None}))
    return 0


def cmd_time(args) -> int:
    torch.set_num_threads(args.threads)
    model, _ = load(args.model)
    model = model.to(args.device)
    with torch.no_grad():
        report = time_loops(model, args.window, args.hop, args.frames, args.reps, args.device)
        if args.batches:
            batches = [int(b) for b in args.batches.split(",")]
            report["batched"] = time_batched(
                model, args.window, args.hop, batches, max(args.reps, 5), args.device
            )
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    report.update(
        model=str(args.model), threads=args.threads, torch=torch.__version__, device=device
    )
    if args.json:
        print(json.dumps(report))
    else:
        r, s = report["researcher_ms_per_frame"], report["sliding_ms_per_frame"]
        print(f"PyTorch {torch.__version__}, {args.threads} thread(s), W {args.window}")
        print(f"researcher's loop (full model per frame, hop 1): {r['median']:.2f} ms/frame "
              f"[{r['min']:.2f}, {r['max']:.2f}]")  # fmt: skip
        print(f"twin sliding loop (DSMI cached, MFAI every {args.hop}): {s['median']:.3f} "
              f"ms/frame [{s['min']:.3f}, {s['max']:.3f}] → {report['sliding_speedup']:.1f}×")  # fmt: skip
        for b in report.get("batched", []):
            print(f"{b['streams']:4d} streams per step: {b['ms_per_step']['median']:.2f} ms "
                  f"→ serves {b['streams_served']:.0f} streams at hop {args.hop}")  # fmt: skip
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="compare with outputs skelseg wrote")
    c.add_argument("--model", type=Path, required=True)
    c.add_argument("--io", type=Path, required=True)
    c.add_argument("--tol", type=float, default=1e-4, help="bound on max |Δ| / output scale")
    c.add_argument("--json", action="store_true")
    e = sub.add_parser("export", help="write a twin model as a skelseg checkpoint")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--model", type=Path, help="load this checkpoint (else a fresh torch init)")
    e.add_argument("--config", help="JSON object overriding the fresh model's config")
    e.add_argument("--classes", type=int, default=5)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--io", type=Path, help="also write inputs + the twin's outputs here")
    e.add_argument("--frames", type=int, default=70)
    t = sub.add_parser("time", help="researcher's loop vs the twin's sliding loop")
    t.add_argument("--model", type=Path, required=True)
    t.add_argument("--window", type=int, default=256)
    t.add_argument("--hop", type=int, default=4)
    t.add_argument("--frames", type=int, default=64)
    t.add_argument("--reps", type=int, default=3)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--device", default="cpu", help="cpu or cuda")
    t.add_argument("--batches", help="also time steps of this many streams at once (e.g. 1,64,256)")
    t.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    return {"check": cmd_check, "export": cmd_export, "time": cmd_time}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
