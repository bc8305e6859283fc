"""PromptAgent's Monte Carlo tree search over prompts (Wang et al. 2024, ICLR; its code's
`search_algo/mcts.py`, itself after llm-reasoners), made resumable for the one search loop.

An iteration of the source: *select* a path from the root, at each node the child of highest UCT
(Q + w_exp * sqrt(ln(N_parent + 1) / max(1, N_node)), N: how many cumulative rewards a node holds, Q
their mean, or the node's reward before it has any), until a leaf or a terminal node; *expand* the leaf
(`expand_width` steps, each on a fresh train batch, each writing `num_new_prompts` children); *simulate*:
from the leaf, go on to its child of highest reward, expanding it when it has no children, until a
terminal node or an early stop; *back-propagate*: each node of the path gets the sum of the rewards from
it to the path's end as a new cumulative reward.

A node is terminal at `depth_limit`, or, deeper than `min_depth`, when its reward is below the mean of the
root's reward and its parent's. The simulation stops early at a node deeper than `min_depth` whose reward
beats every reward seen so far (the threshold, which starts at the root's reward).

Expansions need the rewards of new prompts, which the loop gives a round later (their dev scores). So
the tree stops wherever it expands (`advance` returns the node to expand) and goes on once the children
are scored (`expanded`). Everything else happens at once, as in the source. Pure data: no model, no
optimizer; `to_dict`/`from_dict` keep it in the loop's checkpoint."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Limits:
    expand_width: int = 3  # expansion steps per expansion, each on its own train batch
    depth_limit: int = 8
    min_depth: int = 2  # early stops and the reward floor apply only deeper than this
    iterations: int = 12
    w_exp: float = 2.5  # the weight of exploration in UCT


@dataclass
class TreeNode:
    id: int
    key: str  # the prompt's key
    parent: int | None
    depth: int
    reward: float
    children: list[int] = field(default_factory=list)
    cum_rewards: list[float] = field(default_factory=list)
    visited: int = 0
    expand_times: int = 0
    terminal: bool = False

    @property
    def q(self) -> float:
        return sum(self.cum_rewards) / len(self.cum_rewards) if self.cum_rewards else self.reward


@dataclass
class Tree:
    limits: Limits
    nodes: list[TreeNode]
    threshold: float  # the highest reward seen (early stops beat it)
    floor: float  # the root's reward (the source's min_threshold)
    iteration: int = 0  # iterations completed
    path: list[int] = field(default_factory=list)  # the current iteration's path
    phase: str = "select"  # where the current iteration goes on: select, simulate, choose
    expanding: int | None = None  # the node whose children the loop is scoring

    @classmethod
    def start(cls, root_key: str, reward: float, limits: Limits) -> Tree:
        return cls(limits, [TreeNode(0, root_key, None, 0, reward)], threshold=reward, floor=reward)

    # --- the source's tests ---

    def uct(self, node: TreeNode) -> float:
        n_parent = 0 if node.parent is None else len(self.nodes[node.parent].cum_rewards)
        return node.q + self.limits.w_exp * math.sqrt(math.log(n_parent + 1) / max(1, len(node.cum_rewards)))

    def at_depth_limit(self, node: TreeNode) -> bool:
        return node.depth >= self.limits.depth_limit

    def below_floor(self, node: TreeNode) -> bool:
        floor = self.floor if node.parent is None else (self.floor + self.nodes[node.parent].reward) / 2
        return node.reward < floor and node.depth > self.limits.min_depth

    def is_terminal(self, node: TreeNode) -> bool:
        return self.at_depth_limit(node) or self.below_floor(node) or node.terminal

    def early_stop(self, node: TreeNode) -> bool:
        return node.reward > self.threshold and node.depth > self.limits.min_depth

    # --- the iteration, resumable ---

    def advance(self) -> int | None:
        """Go on with the search until a node must be expanded (its id; the loop scores its children, then
        `expanded`) or every iteration is done (None)."""
        while True:
            if self.phase == "select":
                if self.iteration >= self.limits.iterations:
                    return None
                self.path = self._select()
                leaf = self.nodes[self.path[-1]]
                if self.at_depth_limit(leaf):
                    self._back_propagate()
                    continue
                self.phase = "simulate"
                if self.is_terminal(leaf):  # the source's expansion of a terminal node: marked, nothing made
                    leaf.terminal = True
                    continue
                return self._expand(leaf)
            node = self.nodes[self.path[-1]]
            if self.phase == "simulate":
                if self.early_stop(node):
                    node.terminal = self.is_terminal(node)
                    self.threshold = max(self.threshold, node.reward)
                    self._back_propagate()
                    continue
                self.threshold = max(self.threshold, node.reward)
                if self.is_terminal(node):
                    self._back_propagate()
                    continue
                self.phase = "choose"
                if not node.children:
                    return self._expand(node)
                continue
            # choose: the child of highest reward (the first on ties); a node that got no children is terminal
            # and, as in the source, the path takes it once more
            if node.children:
                node = max((self.nodes[c] for c in node.children), key=lambda child: child.reward)
            else:
                node.terminal = True
            node.visited += 1
            self.path.append(node.id)
            self.phase = "simulate"

    def expanded(self, children: list[tuple[str, float]]) -> list[int]:
        """The expanding node's children (key, reward), as the loop scored them; their ids."""
        parent = self.nodes[self.expanding]
        made = []
        for key, reward in children:
            child = TreeNode(len(self.nodes), key, parent.id, parent.depth + 1, reward)
            self.nodes.append(child)
            child.terminal = self.is_terminal(child)
            parent.children.append(child.id)
            made.append(child.id)
        self.expanding = None
        return made

    def _select(self) -> list[int]:
        node, path = self.nodes[0], []
        while True:
            path.append(node.id)
            node.visited += 1
            if not node.children or self.is_terminal(node):
                return path
            node = max((self.nodes[c] for c in node.children), key=self.uct)  # the first on ties

    def _expand(self, node: TreeNode) -> int:
        node.expand_times += 1
        self.expanding = node.id
        return node.id

    def _back_propagate(self) -> None:
        total = 0.0
        for node_id in reversed(self.path):
            total += self.nodes[node_id].reward
            self.nodes[node_id].cum_rewards.append(total)
        self.iteration += 1
        self.path, self.phase = [], "select"

    # --- as the checkpoint keeps it ---

    def to_dict(self) -> dict:
        return {"limits": asdict(self.limits), "nodes": [asdict(n) for n in self.nodes], "threshold": self.threshold,
                "floor": self.floor, "iteration": self.iteration, "path": list(self.path), "phase": self.phase,
                "expanding": self.expanding}

    @classmethod
    def from_dict(cls, d: dict) -> Tree:
        return cls(Limits(**d["limits"]), [TreeNode(**n) for n in d["nodes"]], d["threshold"], d["floor"], d["iteration"],
                   list(d["path"]), d["phase"], d["expanding"])

    def path_to(self, node_id: int) -> list[TreeNode]:
        """The nodes from the root to `node_id`."""
        path = [self.nodes[node_id]]
        while path[-1].parent is not None:
            path.append(self.nodes[path[-1].parent])
        return path[::-1]
