"""A tiny regression model trained with mini-batch SGD, in pure Python: a few seconds a run.

autoresearch's demo tunes the constants below. It prints the training loss as it goes and
`val_loss: X` at the end, as a real training script would.
"""

import math
import os
import random
import time

LEARNING_RATE = 0.02
BATCH_SIZE = 32
EPOCHS = 6
HIDDEN_UNITS = 8
WEIGHT_DECAY = 0.01
INIT_SCALE = 0.5
SEED = int(os.environ.get("AUTORESEARCH_SEED", "0"))  # autoresearch varies it to measure the noise across seeds

TIME_BUDGET_S = float(os.environ.get("AUTORESEARCH_TIME_BUDGET_S", "60"))


def make_data(n, rng):
    data = []
    for _ in range(n):
        x = rng.uniform(-2.0, 2.0)
        y = math.sin(1.5 * x) + 0.3 * x + rng.gauss(0.0, 0.1)
        data.append((x, y))
    return data


def forward(params, x):
    w1, b1, w2, b2 = params
    hidden = [math.tanh(w * x + b) for w, b in zip(w1, b1)]
    return sum(h * w for h, w in zip(hidden, w2)) + b2, hidden


def main():
    rng = random.Random(SEED)
    train, val = make_data(2000, rng), make_data(400, rng)
    w1 = [rng.gauss(0.0, INIT_SCALE) for _ in range(HIDDEN_UNITS)]
    b1 = [rng.gauss(0.0, INIT_SCALE) for _ in range(HIDDEN_UNITS)]
    w2 = [rng.gauss(0.0, INIT_SCALE) for _ in range(HIDDEN_UNITS)]
    b2 = 0.0
    start = time.time()
    step = 0
    for epoch in range(EPOCHS):
        rng.shuffle(train)
        for i in range(0, len(train), BATCH_SIZE):
            batch = train[i : i + BATCH_SIZE]
            g1 = [0.0] * HIDDEN_UNITS
            gb1 = [0.0] * HIDDEN_UNITS
            g2 = [0.0] * HIDDEN_UNITS
            gb2 = 0.0
            loss = 0.0
            for x, y in batch:
                pred, hidden = forward((w1, b1, w2, b2), x)
                err = pred - y
                loss += err * err
                for j in range(HIDDEN_UNITS):
                    g2[j] += 2 * err * hidden[j]
                    back = 2 * err * w2[j] * (1 - hidden[j] ** 2)
                    g1[j] += back * x
                    gb1[j] += back
                gb2 += 2 * err
            n = len(batch)
            for j in range(HIDDEN_UNITS):
                w1[j] -= LEARNING_RATE * (g1[j] / n + WEIGHT_DECAY * w1[j])
                b1[j] -= LEARNING_RATE * gb1[j] / n
                w2[j] -= LEARNING_RATE * (g2[j] / n + WEIGHT_DECAY * w2[j])
            b2 -= LEARNING_RATE * gb2 / n
            step += 1
            if step % 10 == 0:
                print(f"step {step} epoch {epoch} loss: {loss / n:.6f}", flush=True)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss diverged at step {step}")
            time.sleep(0.002)
        if time.time() - start > TIME_BUDGET_S:
            print("time budget reached", flush=True)
            break
    val_loss = sum((forward((w1, b1, w2, b2), x)[0] - y) ** 2 for x, y in val) / len(val)
    print(f"training_seconds: {time.time() - start:.1f}")
    print(f"val_loss: {val_loss:.6f}")


if __name__ == "__main__":
    main()
