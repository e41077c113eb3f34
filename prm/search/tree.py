"""Step-level tree search guided by a step scorer: beam search and DVTS.

Each problem is searched as one or more trees. A tree keeps up to `width` prefixes; at
each step every unfinished kept prefix gets `expand` candidate next steps (the completer
stops at the step delimiter or after the `#### x` answer line, which finishes a
solution); every candidate prefix is scored; the tree keeps the `width` best of the new
candidates and its finished solutions still kept. A tree stops when all it keeps is
finished, at `max_depth`, or when its budget cannot pay for another step. With `refill`
(search-and-learn's variant) a finished solution leaves the kept set at once and its slot
goes to the next best unfinished prefix, so the search goes on until the budget is spent
or no prefix is left, and collects more finished solutions to choose from.

- beam: one tree of width W (N // K by default); the root is expanded W x K times.
- DVTS (Tian et al. / HF search-and-learn): W independent subtrees of width 1, each with
  1/W of the budget; diversity comes from the subtrees never competing.

Batching: at each depth, every prefix to expand of every tree of every problem goes to the
completer in ONE `complete_prompts` call (per-prompt seeds and counts), and every new
candidate prefix to the scorer in ONE `score_prefixes` call, each with its parent's scorer
state. A depth costs W x K samples of at most `step_tokens` tokens per problem and W x K
scored prefixes of length depth + 1, so a search of depth D costs about D x W x K steps
generated and D completer calls. A causal scorer (`StepScorer.score_prefixes`) keeps each
kept prefix's KV cache and runs only a candidate's new step: D x W x K steps read; any other
scorer re-reads prefixes whole, W x K x D(D+1)/2 steps. `Compute.scorer_computed_tokens`
against `scorer_new_tokens` shows which. A state lives only while its node may still be
expanded.

Budget: before each depth a tree may start only as many samples as its remaining tokens
cover at `step_tokens` each (`Budget.affordable`), given to its best prefixes first; when not one
fits but at least `MIN_TAIL_TOKENS` are left, one last sample may use what is left (rounded
down to a power of two; a separate call per such cap). So a tree never spends more than its
budget.
The answer: among all finished solutions of all trees of a problem, the best score
(`final="best"`) or the weighted vote (`final="vote"`); if none finished, the best
unfinished prefix, without an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prm.aggregate import aggregate
from prm.search.answer_line import answer_step
from prm.search.calls import Calls, parse_solution, parse_step
from prm.search.choose import Candidate, choose
from prm.search.compute import Budget
from prm.search.config import Problem, SearchConfig

if TYPE_CHECKING:
    from completers.base import Completer

# A tree that cannot afford a full `step_tokens` sample still gets one shorter sample when this
# many tokens are left: enough for an answer line, so a tight budget can still finish.
MIN_TAIL_TOKENS = 8


@dataclass
class Node:
    """One prefix in a tree. `path` is the sample index at each depth (its seed and order)."""

    id: int
    parent: Node | None
    steps: list[str]
    path: tuple = ()
    step: str | None = None  # the step this node added (None: the root, or an answer line alone)
    answer: str | None = None
    finished: bool = False
    tokens: int = 0  # tokens of this node's own sample (and of its lookahead continuation)
    ahead: list[str] = field(default_factory=list)  # lookahead: the continuation's steps (+ answer line)
    scores: list[float | None] = field(default_factory=list)
    score: float | None = None
    kept: bool = False
    state: object = field(default=None, repr=False, compare=False)  # the scorer's, for the children

    @property
    def depth(self) -> int:
        return len(self.path)

    def candidate(self, tree_index: int = 0) -> Candidate:
        tokens, node = 0, self
        while node is not None:
            tokens, node = tokens + node.tokens, node.parent
        return Candidate(list(self.steps), self.answer, list(self.scores), self.score, (tree_index,) + self.path,
                         tokens, self.finished)

    def rank(self) -> tuple:
        """Sort key: higher score first, unscored last, then earlier generated (shorter path,
        lower sample index) first."""
        return (self.score is None, -(self.score or 0.0), self.path)

    def record(self) -> dict:
        return {"id": self.id, "parent": None if self.parent is None else self.parent.id, "depth": self.depth,
                "step": self.step, "answer": self.answer, "finished": self.finished, "score": self.score,
                "tokens": self.tokens, "kept": self.kept}


@dataclass
class Tree:
    problem: Problem
    index: int
    width: int
    first_expand: int  # samples from the root
    expand: int
    budget: Budget
    kept: list[Node] = field(default_factory=list)
    finished: list[Node] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    done: bool = False


def plan_trees(problems: list[Problem], config: SearchConfig, budget_tokens: int) -> list[Tree]:
    """The trees of each problem (one for beam, W for DVTS), each with its share of the budget."""
    width, expand = config.shape()
    trees = []
    for problem in problems:
        if config.strategy == "beam":
            shapes = [(width, width * expand, budget_tokens)]
        else:  # dvts: W subtrees of width 1 share the budget equally
            shapes = [(1, expand, budget_tokens // width)] * width
        for index, (w, first, tokens) in enumerate(shapes):
            root = Node(0, None, [], kept=True)
            trees.append(Tree(problem, index, w, first, expand, Budget(tokens), kept=[root], nodes=[root]))
    return trees


@dataclass
class Request:
    """`count` samples of the next step after `node`, at most `max_new_tokens` tokens each."""

    tree: Tree
    node: Node
    count: int
    max_new_tokens: int
    lookahead_tokens: int = 0  # reserved for one lookahead continuation of each sample


def tree_search(problems: list[Problem], completer: Completer, calls: Calls, config: SearchConfig,
                budget_tokens: int) -> dict[str, tuple[list[Candidate], list[Candidate], list[dict]]]:
    """Search every problem; per problem id: (finished candidates, unfinished kept candidates,
    explored-tree records or [] unless `keep_tree`)."""
    trees = plan_trees(problems, config, budget_tokens)
    for depth in range(config.max_depth):
        requests = plan_requests(trees, depth, config)
        if not requests:
            break
        new = expand(requests, completer, calls, config)
        if config.lookahead:
            look_ahead(requests, new, completer, calls, config)
        _score(trees, new, calls, config)
        for tree in trees:
            if not tree.done:
                select(tree, new.get(id(tree), []), config)
        _release_states(requests, new)
    out: dict[str, tuple[list[Candidate], list[Candidate], list[dict]]] = {p.id: ([], [], []) for p in problems}
    for tree in trees:
        finished, unfinished, records = out[tree.problem.id]
        finished += [n.candidate(tree.index) for n in tree.finished]
        unfinished += [n.candidate(tree.index) for n in tree.kept if not n.finished]
        if config.keep_tree:
            records += [{"tree": tree.index, **n.record()} for n in tree.nodes]
    return out


def plan_requests(trees: list[Tree], depth: int, config: SearchConfig) -> list[Request]:
    """What each unfinished tree samples at this depth, within its remaining budget (best
    prefixes first); a tree that can sample nothing is done."""
    from annotate.rollouts import spread

    requests = []
    for tree in trees:
        if tree.done:
            continue
        frontier = [node for node in tree.kept if not node.finished]
        want = [tree.first_expand if depth == 0 else tree.expand] * len(frontier)
        cap, ahead = config.step_tokens, config.lookahead * config.step_tokens
        affordable = tree.budget.affordable(cap + ahead)
        if affordable == 0 and ahead and tree.budget.affordable(cap):
            ahead, affordable = 0, 1  # no room to look ahead: one plain sample
        if affordable == 0 and tree.budget.remaining >= MIN_TAIL_TOKENS:
            # one last, shorter sample (room for an answer line); caps are powers of two so that
            # the trees at their budget's end share few calls
            cap, ahead, affordable = 2 ** (tree.budget.remaining.bit_length() - 1), 0, 1
        grant = spread(want, min(sum(want), affordable))
        if not any(grant):
            tree.done = True
            continue
        requests += [Request(tree, node, count, cap, ahead) for node, count in zip(frontier, grant) if count]
    return requests


def expand(requests: list[Request], completer: Completer, calls: Calls, config: SearchConfig
           ) -> dict[int, list[Node]]:
    """Sample every request (one completer call per distinct `max_new_tokens`: one, except
    near the end of budgets) and add the samples as nodes; returns the new nodes of each tree
    (by `id(tree)`), without duplicates when `config.dedupe`. Spends the trees' budgets."""
    from annotate.rollouts import derive_seed

    results: list = [None] * len(requests)
    for cap in sorted({r.max_new_tokens for r in requests}, reverse=True):
        chosen = [i for i, r in enumerate(requests) if r.max_new_tokens == cap]
        batch = [requests[i] for i in chosen]
        sampled = calls.sample([completer.prompt_for(r.tree.problem.question, r.node.steps) for r in batch],
                               [r.tree.problem.id for r in batch], [r.count for r in batch],
                               [derive_seed(config.seed, r.tree.problem.id, r.tree.index, *r.node.path)
                                for r in batch], cap, [completer.step_delimiter])
        for i, completions in zip(chosen, sampled):
            results[i] = completions
    new: dict[int, list[Node]] = {}
    seen: dict[int, set] = {}
    for request, completions in zip(requests, results):
        tree, node = request.tree, request.node
        for j, completion in enumerate(completions):
            tree.budget.spend(completion.tokens)
            step, answer, finished = parse_step(completion.text)
            child = Node(len(tree.nodes), node, node.steps + ([step] if step else []), node.path + (j,),
                         step, answer, finished, completion.tokens)
            tree.nodes.append(child)
            key = (tuple(child.steps), child.answer, child.finished)
            if config.dedupe and key in seen.setdefault(id(tree), set()):
                continue
            seen[id(tree)].add(key)
            new.setdefault(id(tree), []).append(child)
    return new


def select(tree: Tree, candidates: list[Node], config: SearchConfig) -> None:
    """Keep the tree's best `width` prefixes (ties: generated first); done when all it keeps
    are finished (or nothing is left)."""
    for node in tree.kept:
        node.kept = False
    tree.finished += [n for n in candidates if n.finished]
    if config.refill:  # finished solutions are set aside; their slots go to the next best prefixes
        pool = [n for n in candidates if not n.finished]
    else:
        pool = [n for n in tree.kept if n.finished] + candidates
    tree.kept = sorted(pool, key=Node.rank)[:tree.width]
    for node in tree.kept:
        node.kept = True
    if not tree.kept or all(node.finished for node in tree.kept):
        tree.done = True


def look_ahead(requests: list[Request], new: dict[int, list[Node]], completer: Completer, calls: Calls,
               config: SearchConfig) -> None:
    """One sampled continuation of up to `config.lookahead` steps for each new unfinished node
    whose request reserved it, in one completer call; its steps go to `node.ahead`, its
    tokens to the node and the tree's budget."""
    from annotate.rollouts import derive_seed

    reserved = {id(r.node): r.lookahead_tokens for r in requests}
    todo = [(r.tree, node) for r in requests if r.lookahead_tokens
            for node in new.get(id(r.tree), []) if node.parent is r.node and not node.finished]
    if not todo:
        return
    results = calls.sample([completer.prompt_for(tree.problem.question, node.steps) for tree, node in todo],
                           [tree.problem.id for tree, _ in todo], [1] * len(todo),
                           [derive_seed(config.seed, tree.problem.id, tree.index, *node.path, "ahead")
                            for tree, node in todo],
                           max(reserved[id(node.parent)] for _, node in todo),
                           [completer.step_delimiter] if config.lookahead == 1 else None)
    for (tree, node), (completion,) in zip(todo, results):
        tree.budget.spend(completion.tokens)
        node.tokens += completion.tokens
        steps, answer = parse_solution(completion.text, completer.split_steps)
        node.ahead = steps[:config.lookahead]
        if answer is not None and len(steps) <= config.lookahead and config.score_answer:
            node.ahead.append(answer_step(answer))


def _release_states(requests: list[Request], new: dict[int, list[Node]]) -> None:
    """Drop the scorer states no later depth reads: the expanded prefixes' (their children
    are scored) and those of new nodes that were not kept or are finished."""
    for request in requests:
        request.node.state = None
    for nodes in new.values():
        for node in nodes:
            if not node.kept or node.finished:
                node.state = None


def _score(trees: list[Tree], new: dict[int, list[Node]], calls: Calls, config: SearchConfig) -> None:
    """Scores of the new nodes, all in one scorer call. A finished node whose answer line is
    not scored keeps its parent's scores (its steps are the parent's). A node with a
    lookahead continuation is scored with it: its own steps keep their own scores, its rank
    is the aggregate over the continuation too."""
    items, owners, targets, parents = [], [], [], []
    for tree in trees:
        for node in new.get(id(tree), []):
            steps = list(node.steps) + node.ahead
            if node.finished and node.answer is not None and config.score_answer:
                steps.append(answer_step(node.answer))
            if not steps:
                continue
            if steps == node.parent.steps and node.parent.scores:
                node.scores = list(node.parent.scores)
                continue
            items.append((tree.problem.question, steps))
            owners.append(tree.problem.id)
            targets.append(node)
            parents.append(node.parent.state)
    ranked = {}
    for node, result in zip(targets, calls.score_prefixes(items, owners, parents)):
        node.scores = list(result.scores)
        node.state = result.state
        if node.ahead:  # rank by the continuation too; keep the node's own steps' scores
            ranked[id(node)] = aggregate(node.scores, config.aggregation)
            node.scores = node.scores[:len(node.scores) - len(node.ahead)]
    for nodes in new.values():
        for node in nodes:
            own = aggregate(node.scores, config.aggregation) if node.scores else None
            node.score = ranked.get(id(node), own)


def pick_answer(finished: list[Candidate], unfinished: list[Candidate], final: str) -> Candidate | None:
    """The searched solution: a finished one by `final`, else the best unfinished prefix."""
    if finished:
        return choose(finished, final)
    return choose(unfinished, "best")
