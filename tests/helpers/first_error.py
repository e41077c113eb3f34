"""A small ProcessBench-layout set with step scores whose first-error metrics are worked out
by hand in tests/test_evals_first_error.py (rows as the release writes them, scores by id)."""

# Records exactly as ProcessBench releases them (one JSON array per subset).
GSM8K = [
    {"id": "gsm8k-0", "generator": "g", "problem": "p0", "steps": ["a", "b", "c"],
     "final_answer_correct": False, "label": 1},
    {"id": "gsm8k-1", "generator": "g", "problem": "p1", "steps": ["a", "b"],
     "final_answer_correct": True, "label": -1},
    {"id": "gsm8k-2", "generator": "g", "problem": "p2", "steps": ["a", "b", "c", "d"],
     "final_answer_correct": False, "label": 2},
    {"id": "gsm8k-3", "generator": "g", "problem": "p3", "steps": ["a", "b", "c"],
     "final_answer_correct": True, "label": -1},
]
MATH = [
    {"id": "math-0", "generator": "g", "problem": "q0", "steps": ["a", "b", "c"],
     "final_answer_correct": False, "label": 0},
    {"id": "math-1", "generator": "g", "problem": "q1", "steps": ["a", "b"],
     "final_answer_correct": True, "label": -1},
    {"id": "math-2", "generator": "g", "problem": "q2", "steps": ["a", "b", "c"],
     "final_answer_correct": True, "label": 2},
]
# Step scores by id; at threshold 0.5 the predicted first error is the first score < 0.5.
SCORES = {
    "gsm8k-0": [0.9, 0.2, 0.8],       # predicts 1, gold 1: right
    "gsm8k-1": [0.8, 0.7],            # predicts -1, gold -1: right
    "gsm8k-2": [0.9, 0.3, 0.2, 0.1],  # predicts 1, gold 2: wrong
    "gsm8k-3": [0.6, 0.4, 0.9],       # predicts 1, gold -1: wrong
    "math-0": [0.1, 0.9, 0.9],        # predicts 0, gold 0: right
    "math-1": [0.55, 0.51],           # predicts -1, gold -1: right
    "math-2": [0.7, 0.6, 0.9],        # predicts -1, gold 2: wrong
}
# By hand:
#   gsm8k: error acc 1/2, correct acc 1/2, F1 = 2(.5)(.5)/(.5+.5) = 1/2
#   math:  error acc 1/2, correct acc 1/1, F1 = 2(.5)(1)/(1.5)   = 2/3
#   ProcessBench average F1 = (1/2 + 2/3) / 2 = 7/12
#   pooled: error acc 2/4, correct acc 2/3, F1 = 2(1/2)(2/3)/(7/6) = 4/7
