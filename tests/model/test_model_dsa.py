"""DSA: equal to dense attention when no range is longer than top-k, and equal to a naive loop implementation.

The naive model below is written separately from keye_agent.model: explicit loops over tokens, heads, keys and
experts, float64 arithmetic, reading only the parameter tensors of the model under test.
"""

from __future__ import annotations

import math

import pytest
import torch


def _rms(x, w, eps):
    return w * (x / torch.sqrt((x * x).mean() + eps))


def _rope_1d(x, pos, theta):
    """Rotate one head vector x [D] at position pos (NeoX: pair i with i + D/2)."""
    D = x.shape[0]
    out = x.clone()
    for i in range(D // 2):
        a = pos * theta ** (-2.0 * i / D)
        c, s = math.cos(a), math.sin(a)
        out[i] = x[i] * c - x[i + D // 2] * s
        out[i + D // 2] = x[i + D // 2] * c + x[i] * s
    return out


def naive_forward(model, ids: list[int]) -> torch.Tensor:
    """Logits [T, V] of one sequence, DSA on, float64, loops everywhere."""
    c = model.config
    P = {n: p.detach().double() for n, p in model.named_parameters()}
    Hq, Hkv, D = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    H, d, topk = c.sa_config.indexer_num_heads, c.sa_config.indexer_head_dim, c.sa_config.topk
    inter = c.moe_intermediate_size
    T = len(ids)
    xs = [P["model.embed_tokens.weight"][i].clone() for i in ids]
    for L in range(c.num_hidden_layers):
        pre = f"model.layers.{L}."
        a = pre + "self_attn."
        hn = [_rms(x, P[pre + "input_layernorm.weight"], c.rms_norm_eps) for x in xs]
        qs, ks, vs, iqs, iws, iks = [], [], [], [], [], []
        for t, h in enumerate(hn):
            q = (P[a + "q_proj.weight"] @ h).view(Hq, D)
            k = (P[a + "k_proj.weight"] @ h).view(Hkv, D)
            qs.append([_rope_1d(_rms(q[j], P[a + "q_norm.weight"], c.rms_norm_eps), t, c.rope_theta)
                       for j in range(Hq)])
            ks.append([_rope_1d(_rms(k[j], P[a + "k_norm.weight"], c.rms_norm_eps), t, c.rope_theta)
                       for j in range(Hkv)])
            vs.append((P[a + "v_proj.weight"] @ h).view(Hkv, D))
            qw = P[a + "sa_indexer.q_proj.weight"] @ h
            iqs.append([_rope_1d(_rms(qw[j * d:(j + 1) * d], P[a + "sa_indexer.q_norm.weight"], 1e-6), t,
                                 c.rope_theta) for j in range(H)])
            iws.append(qw[H * d:])
            kk = P[a + "sa_indexer.k_proj.weight"] @ h
            kk = (kk - kk.mean()) / torch.sqrt(kk.var(unbiased=False) + 1e-6)
            kk = kk * P[a + "sa_indexer.k_norm.weight"] + P[a + "sa_indexer.k_norm.bias"]
            iks.append(_rope_1d(kk, t, c.rope_theta))
        new = []
        for t in range(T):
            scores = []
            for s in range(t + 1):
                score = sum(iws[t][j] * d**-0.5 * max(0.0, float(iqs[t][j] @ iks[s])) for j in range(H))
                scores.append((-float(score), s))
            chosen = [s for _, s in sorted(scores)[:topk]]
            heads = []
            for j in range(Hq):
                g = j // (Hq // Hkv)
                logits = torch.stack([qs[t][j] @ ks[s][g] * D**-0.5 for s in chosen])
                p = torch.softmax(logits, 0)
                heads.append(sum(p[n] * vs[s][g] for n, s in enumerate(chosen)))
            new.append(xs[t] + P[a + "o_proj.weight"] @ torch.cat(heads))
        xs = new
        out = []
        for x in xs:
            h = _rms(x, P[pre + "post_attention_layernorm.weight"], c.rms_norm_eps)
            probs = torch.softmax(P[pre + "mlp.gate.weight"] @ h, 0)
            top = sorted(range(c.num_experts), key=lambda e: -float(probs[e]))[: c.num_experts_per_tok]
            norm = sum(float(probs[e]) for e in top)
            y = torch.zeros_like(x)
            for e in top:
                gate_w = P[pre + "mlp.experts.gate_up_proj"][e][:, :inter].T  # per-expert gate_proj.weight [I, hidden]
                up_w = P[pre + "mlp.experts.gate_up_proj"][e][:, inter:].T
                down_w = P[pre + "mlp.experts.down_proj"][e].T  # down_proj.weight [hidden, I]
                g_ = gate_w @ h
                y = y + float(probs[e]) / norm * (down_w @ (g_ * torch.sigmoid(g_) * (up_w @ h)))
            out.append(x + y)
        xs = out
    return torch.stack([P["lm_head.weight"] @ _rms(x, P["model.norm.weight"], c.rms_norm_eps) for x in xs])


@pytest.mark.parametrize("topk", [1, 3, 7])
def test_dsa_matches_naive_loops_when_topk_is_small(make_tiny, topk):
    model = make_tiny(seed=topk, sa_config={"topk": topk})
    assert model.sparse
    ids = torch.randint(0, model.config.vocab_size, (2, 14), generator=torch.Generator().manual_seed(topk))
    with torch.no_grad():
        ours = model(ids)
    for b in range(2):
        ref = naive_forward(model, ids[b].tolist())
        torch.testing.assert_close(ours[b].double(), ref, rtol=2e-4, atol=2e-4)


def test_dsa_equals_dense_when_no_range_exceeds_topk(make_tiny):
    T = 24
    ids = torch.randint(0, 2048, (2, T), generator=torch.Generator().manual_seed(5))
    for topk in (T, 2048):  # topk == T is the boundary: the last query's range has exactly topk keys
        model = make_tiny(seed=3, sa_config={"topk": topk})
        with torch.no_grad():
            sparse = model(ids)
            model.set_sparse(False)
            dense = model(ids)
        torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)
    # One key fewer than the longest range: the last query now drops a key, so the logits must move.
    model = make_tiny(seed=3, sa_config={"topk": T - 1})
    with torch.no_grad():
        sparse = model(ids)
        model.set_sparse(False)
        dense = model(ids)
    torch.testing.assert_close(sparse[:, : T - 1], dense[:, : T - 1], rtol=1e-5, atol=1e-5)
    assert (sparse[:, -1] - dense[:, -1]).abs().max() > 1e-4


def test_model_without_indexer_runs_dense_only(make_tiny):
    model = make_tiny(sa_config=None)
    assert not model.sparse
    assert not any("sa_indexer" in n for n, _ in model.named_parameters())
    with pytest.raises(ValueError, match="sa_config"):
        model.set_sparse(True)
