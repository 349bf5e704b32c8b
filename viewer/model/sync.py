"""Link properties of several :class:`ViewerState` objects (compare mode, MPR), each property toggled on/off.

Linkable properties:

* ``slice``             -- axial slice index (clamped to each volume's slice count)
* ``position``          -- full crosshair voxel (z, y, x) (MPR, linked cursors)
* ``window``            -- window/level
* ``camera``            -- zoom and pan
* ``heatmap_scale``     -- colour scale (vmin, vmax) and colour map of the active heatmap layer
* ``heatmap_threshold`` -- threshold of the active heatmap layer
* ``heatmap_opacity``   -- opacity and visibility of the active heatmap layer

A change in one member is copied to every other member; a re-entrancy guard stops the echo.  When a member
joins, it takes the linked values of the first member.  Turning a property on aligns everyone to the first
member too.
"""

from __future__ import annotations

from collections.abc import Iterable

from viewer.model.events import Event, EmitterGroup
from viewer.model.viewer_state import ViewerState

PROPERTIES = ("slice", "position", "window", "camera", "heatmap_scale", "heatmap_threshold", "heatmap_opacity")
DEFAULT_LINKED = ("slice", "window", "camera", "heatmap_scale", "heatmap_threshold")

# heatmap layer property -> sync property that carries it
_HEATMAP_PROPERTY = {"scale": "heatmap_scale", "colormap": "heatmap_scale", "threshold": "heatmap_threshold",
                     "opacity": "heatmap_opacity", "visible": "heatmap_opacity"}


class SyncGroup:
    """Events: ``members`` (value = tuple of states), ``linked`` (value = frozenset of linked properties)."""

    def __init__(self, states: Iterable[ViewerState] = (), linked: Iterable[str] = DEFAULT_LINKED):
        self.events = EmitterGroup(self, ("members", "linked"))
        self._states: list[ViewerState] = []
        self._linked = set(_check(linked))
        self._busy = False
        for state in states:
            self.add(state)

    # --- membership ---------------------------------------------------------------------------------------
    @property
    def states(self) -> tuple[ViewerState, ...]:
        return tuple(self._states)

    def add(self, state: ViewerState) -> None:
        if any(s is state for s in self._states):
            return
        self._states.append(state)
        for name in ("position", "window", "camera", "heatmap", "volume", "layers"):
            getattr(state.events, name).connect(self._on_state_event)
        if len(self._states) > 1:
            self._align(state, self._states[0], self._linked)
        self.events.members.emit(self.states)

    def remove(self, state: ViewerState) -> None:
        if not any(s is state for s in self._states):
            return
        self._states = [s for s in self._states if s is not state]
        state.events.disconnect(self._on_state_event)
        self.events.members.emit(self.states)

    def clear(self) -> None:
        for state in list(self._states):
            self.remove(state)

    # --- per-property toggles -----------------------------------------------------------------------------
    @property
    def linked(self) -> frozenset[str]:
        return frozenset(self._linked)

    def is_linked(self, prop: str) -> bool:
        return _check([prop])[0] in self._linked

    def set_linked(self, prop: str, on: bool = True) -> None:
        prop = _check([prop])[0]
        if on == (prop in self._linked):
            return
        if on:
            self._linked.add(prop)
            if self._states:
                for state in self._states[1:]:
                    self._align(state, self._states[0], {prop})
        else:
            self._linked.discard(prop)
        self.events.linked.emit(self.linked)

    # --- propagation --------------------------------------------------------------------------------------
    def _on_state_event(self, event: Event) -> None:
        if self._busy:
            return
        source: ViewerState = event.source
        if event.type == "position":
            props = {"position", "slice"}
        elif event.type == "heatmap":
            props = {_HEATMAP_PROPERTY.get(event.value[1], "")}
        elif event.type in ("volume", "layers"):
            # a new volume or heatmap in one member: let it join the group's current linked values
            if self._states and source is not self._states[0]:
                self._propagate(self._states[0], [source], self._linked)
            else:
                self._propagate(source, [s for s in self._states if s is not source], self._linked)
            return
        else:
            props = {event.type}
        props &= self._linked
        if props:
            self._propagate(source, [s for s in self._states if s is not source], props)

    def _align(self, state: ViewerState, reference: ViewerState, props: set[str]) -> None:
        self._propagate(reference, [state], props)

    def _propagate(self, source: ViewerState, targets: list[ViewerState], props: set[str]) -> None:
        if source.volume is None or not targets:
            return
        self._busy = True
        try:
            for target in targets:
                if target.volume is None:
                    continue
                if "position" in props:
                    target.position = source.position
                elif "slice" in props:
                    target.slice_index = source.slice_index
                if "window" in props and source.is_hu == target.is_hu:
                    target.window = source.window
                if "camera" in props:
                    target.camera = source.camera
                src, dst = source.active_heatmap, target.active_heatmap
                if src is not None and dst is not None:
                    if "heatmap_scale" in props:
                        dst.scale, dst.colormap = src.scale, src.colormap
                    if "heatmap_threshold" in props:
                        dst.threshold = src.threshold
                    if "heatmap_opacity" in props:
                        dst.opacity, dst.visible = src.opacity, src.visible
        finally:
            self._busy = False


def _check(props: Iterable[str]) -> list[str]:
    props = list(props)
    unknown = [p for p in props if p not in PROPERTIES]
    if unknown:
        raise ValueError(f"unknown sync propert{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
                         f"choose from {', '.join(PROPERTIES)}")
    return props
