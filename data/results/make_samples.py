"""Write the course-made sample result files in this folder (seeded; re-running gives the same bytes).

Three made-up runs, one per format and one per fit verdict, shaped like what each service returns:
  openai_step_metrics.b64   OpenAI's result file as files.content() returns it: base64 of the CSV (good fit)
  azure_results.csv         Azure OpenAI's results.csv with full_valid_* at epoch ends (overfitting)
  legacy_2023_results.csv   OpenAI's 2023 legacy file with elapsed_* and sequence accuracies (underfitting)
"""
import base64
import numpy as np
import pandas as pd

OUT = str(__import__("pathlib").Path(__file__).resolve().parent) + "/"
rng = np.random.default_rng(2024)


def noisy(values, scale):
    return np.clip(values * (1 + rng.normal(0, scale, len(values))), 0.0005, None)


def acc_of(loss, top=0.97):
    return np.clip(top - 0.28 * loss + rng.normal(0, 0.02, len(loss)), 0.05, 1.0)


def csv(frame):
    return frame.to_csv(index=False, float_format="%.5f", lineterminator="\n")


# OpenAI: 40 examples x 3 epochs, batch size 1 -> 120 steps; validation every 10 steps. A good fit.
steps = np.arange(1, 121)
t = steps / 120
train = noisy(0.32 + 1.9 * np.exp(-9 * t), 0.25)
valid = 0.45 + 1.8 * np.exp(-8 * t)
every = steps % 10 == 0
openai = pd.DataFrame({"step": steps, "train_loss": train, "train_accuracy": acc_of(train),
                       "valid_loss": np.where(every, noisy(valid, 0.06), np.nan)})
openai["valid_mean_token_accuracy"] = np.where(every, acc_of(openai["valid_loss"].fillna(1).values), np.nan)
open(OUT + "openai_step_metrics.b64", "w").write(base64.b64encode(csv(openai).encode()).decode() + "\n")

# Azure: 24 examples x 5 epochs, batch size 1 -> 120 steps; validation every 6 steps, full validation at
# each epoch end. Overfits: validation loss bottoms out in epoch 2 and climbs while training loss falls.
train = noisy(0.04 + 2.1 * np.exp(-5.5 * t), 0.22)
valid = 0.62 + 1.6 * np.exp(-9 * t) + 1.1 * np.clip(t - 0.38, 0, None) ** 1.3
every = steps % 6 == 0
azure = pd.DataFrame({"step": steps, "train_loss": train, "train_mean_token_accuracy": acc_of(train, 0.99),
                      "valid_loss": np.where(every, noisy(valid, 0.05), np.nan)})
azure["valid_mean_token_accuracy"] = np.where(every, acc_of(azure["valid_loss"].fillna(1).values, 0.93), np.nan)
ends = steps % 24 == 0
azure["full_valid_loss"] = np.where(ends, noisy(valid, 0.01), np.nan)
azure["full_valid_mean_token_accuracy"] = np.where(ends, acc_of(azure["full_valid_loss"].fillna(1).values, 0.93), np.nan)
open(OUT + "azure_results.csv", "w").write(csv(azure))

# Legacy 2023 (prompt/completion, babbage-002 era): 200 examples x 1 epoch, batch size 4 -> 50 steps;
# validation every 5 steps. Underfits: a low learning rate, the loss still falls steeply at the end.
steps = np.arange(1, 51)
t = steps / 50
train = noisy(3.1 - 1.45 * t, 0.06)
valid = 3.2 - 1.35 * t
every = steps % 5 == 0
tokens = np.cumsum(rng.integers(260, 420, len(steps)))
legacy = pd.DataFrame({"step": steps, "elapsed_tokens": tokens, "elapsed_examples": steps * 4,
                       "training_loss": train, "training_sequence_accuracy": np.round(np.clip(0.5 - train / 6, 0, 1) * 4) / 4,
                       "training_token_accuracy": acc_of(train, 0.95)})
legacy["validation_loss"] = np.where(every, noisy(valid, 0.03), np.nan)
legacy["validation_sequence_accuracy"] = np.where(every, np.clip(0.45 - valid / 6, 0, 1).round(2), np.nan)
legacy["validation_token_accuracy"] = np.where(every, acc_of(legacy["validation_loss"].fillna(1).values, 0.92), np.nan)
open(OUT + "legacy_2023_results.csv", "w").write(csv(legacy))
print("written")
