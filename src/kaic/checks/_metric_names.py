"""Accelerator metric names per vendor and OpenTelemetry, their units, and device labels.

Owns: which Prometheus series mean utilization, memory used, temperature, power and
interconnect traffic for each known exporter (NVIDIA DCGM exporter, AMD device metrics
exporter, Intel Gaudi and XPU Manager, AWS Neuron, Google TPU, Triton, OpenTelemetry
hardware semantic conventions), how to convert each to one canonical unit, and which
labels identify a device. Must not talk to a cluster.

Sources: reference notes on exporter metric names (DCGM ``etc/default-counters.csv``, AMD
``metricslist.md``, Habana exporter docs, Intel ``convert-dashboard.sh``, the Neuron
monitor guide, the OpenTelemetry ``model/hardware/*.yaml`` files and the
Prometheus translation rules of the OpenTelemetry collector).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Concept(StrEnum):
    """What a series measures, in a canonical unit."""

    UTILIZATION = "utilization"  # ratio 0..1
    MEMORY_USED = "memory_used"  # bytes
    TEMPERATURE = "temperature"  # degrees Celsius
    POWER = "power"  # watts
    INTERCONNECT = "interconnect"  # bytes (counter) or bytes per second

    @property
    def unit(self) -> str:
        return {
            "utilization": "ratio",
            "memory_used": "bytes",
            "temperature": "°C",
            "power": "W",
            "interconnect": "bytes",
        }[self.value]


MUST_CONCEPTS = (Concept.UTILIZATION, Concept.MEMORY_USED)
SHOULD_CONCEPTS = (Concept.TEMPERATURE, Concept.POWER, Concept.INTERCONNECT)


@dataclass(frozen=True)
class MetricName:
    """A known series name: what it measures, the factor to the canonical unit, whose."""

    name: str
    concept: Concept
    factor: float
    vendor: str
    otel: bool = False


MIB = 1024 * 1024
_PCT = 0.01

KNOWN_METRICS: tuple[MetricName, ...] = (
    # NVIDIA DCGM exporter (the Prometheus name is the DCGM field name)
    MetricName("DCGM_FI_DEV_GPU_UTIL", Concept.UTILIZATION, _PCT, "nvidia-dcgm"),
    MetricName("DCGM_FI_PROF_GR_ENGINE_ACTIVE", Concept.UTILIZATION, 1.0, "nvidia-dcgm"),
    MetricName("DCGM_FI_PROF_SM_ACTIVE", Concept.UTILIZATION, 1.0, "nvidia-dcgm"),
    MetricName("DCGM_FI_DEV_FB_USED", Concept.MEMORY_USED, MIB, "nvidia-dcgm"),
    MetricName("DCGM_FI_DEV_GPU_TEMP", Concept.TEMPERATURE, 1.0, "nvidia-dcgm"),
    MetricName("DCGM_FI_DEV_MEMORY_TEMP", Concept.TEMPERATURE, 1.0, "nvidia-dcgm"),
    MetricName("DCGM_FI_DEV_POWER_USAGE", Concept.POWER, 1.0, "nvidia-dcgm"),
    MetricName("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", Concept.INTERCONNECT, 1.0, "nvidia-dcgm"),
    MetricName("DCGM_FI_PROF_NVLINK_TX_BYTES", Concept.INTERCONNECT, 1.0, "nvidia-dcgm"),
    MetricName("DCGM_FI_PROF_NVLINK_RX_BYTES", Concept.INTERCONNECT, 1.0, "nvidia-dcgm"),
    MetricName("DCGM_FI_PROF_PCIE_TX_BYTES", Concept.INTERCONNECT, 1.0, "nvidia-dcgm"),
    MetricName("DCGM_FI_PROF_PCIE_RX_BYTES", Concept.INTERCONNECT, 1.0, "nvidia-dcgm"),
    # AMD device metrics exporter (lower-case names; VRAM in MB, activity in %)
    MetricName("gpu_gfx_activity", Concept.UTILIZATION, _PCT, "amd"),
    MetricName("gpu_used_vram", Concept.MEMORY_USED, 1e6, "amd"),
    MetricName("gpu_junction_temperature", Concept.TEMPERATURE, 1.0, "amd"),
    MetricName("gpu_edge_temperature", Concept.TEMPERATURE, 1.0, "amd"),
    MetricName("gpu_memory_temperature", Concept.TEMPERATURE, 1.0, "amd"),
    MetricName("gpu_power_usage", Concept.POWER, 1.0, "amd"),
    MetricName("gpu_package_power", Concept.POWER, 1.0, "amd"),
    MetricName("gpu_xgmi_link_rx", Concept.INTERCONNECT, 1e3, "amd"),
    MetricName("gpu_xgmi_link_tx", Concept.INTERCONNECT, 1e3, "amd"),
    MetricName("pcie_bandwidth", Concept.INTERCONNECT, 1.0, "amd"),
    # Intel Gaudi (power in milliwatts)
    MetricName("habanalabs_utilization", Concept.UTILIZATION, _PCT, "intel-gaudi"),
    MetricName("habanalabs_memory_used_bytes", Concept.MEMORY_USED, 1.0, "intel-gaudi"),
    MetricName("habanalabs_temperature_onchip", Concept.TEMPERATURE, 1.0, "intel-gaudi"),
    MetricName("habanalabs_temperature_onboard", Concept.TEMPERATURE, 1.0, "intel-gaudi"),
    MetricName("habanalabs_power_mW", Concept.POWER, 1e-3, "intel-gaudi"),
    MetricName("habanalabs_pcie_receive_throughput", Concept.INTERCONNECT, 1.0, "intel-gaudi"),
    MetricName("habanalabs_pcie_transmit_throughput", Concept.INTERCONNECT, 1.0, "intel-gaudi"),
    # Intel GPU, XPU Manager 1.x exporter
    MetricName("xpum_engine_group_compute_all_ratio", Concept.UTILIZATION, 1.0, "intel-xpum"),
    MetricName("xpum_memory_used_bytes", Concept.MEMORY_USED, 1.0, "intel-xpum"),
    MetricName("xpum_temperature_celsius", Concept.TEMPERATURE, 1.0, "intel-xpum"),
    MetricName("xpum_power_watts", Concept.POWER, 1.0, "intel-xpum"),
    MetricName("xpum_pcie_read_bytes", Concept.INTERCONNECT, 1.0, "intel-xpum"),
    MetricName("xpum_pcie_write_bytes", Concept.INTERCONNECT, 1.0, "intel-xpum"),
    # AWS Neuron (neuron-monitor-prometheus.py)
    MetricName("neuroncore_utilization_ratio", Concept.UTILIZATION, 1.0, "aws-neuron"),
    MetricName("neuron_runtime_memory_used_bytes", Concept.MEMORY_USED, 1.0, "aws-neuron"),
    # Google TPU (GKE device plugin /metrics)
    MetricName("tensorcore_utilization", Concept.UTILIZATION, _PCT, "google-tpu"),
    MetricName("duty_cycle", Concept.UTILIZATION, _PCT, "google-tpu"),
    MetricName("memory_used", Concept.MEMORY_USED, 1.0, "google-tpu"),
    # NVIDIA Triton's own GPU metrics
    MetricName("nv_gpu_utilization", Concept.UTILIZATION, 1.0, "nvidia-triton"),
    MetricName("nv_gpu_memory_used_bytes", Concept.MEMORY_USED, 1.0, "nvidia-triton"),
    MetricName("nv_gpu_power_usage", Concept.POWER, 1.0, "nvidia-triton"),
    # OpenTelemetry hardware semantic conventions, as translated to Prometheus names
    MetricName("hw_gpu_utilization_ratio", Concept.UTILIZATION, 1.0, "opentelemetry", True),
    MetricName("hw_gpu_memory_usage_bytes", Concept.MEMORY_USED, 1.0, "opentelemetry", True),
    MetricName("hw_memory_usage_bytes", Concept.MEMORY_USED, 1.0, "opentelemetry", True),
    MetricName("hw_temperature_celsius", Concept.TEMPERATURE, 1.0, "opentelemetry", True),
    MetricName("hw_power_watts", Concept.POWER, 1.0, "opentelemetry", True),
    MetricName("hw_gpu_io_bytes_total", Concept.INTERCONNECT, 1.0, "opentelemetry", True),
    MetricName("hw_gpu_io_bytes", Concept.INTERCONNECT, 1.0, "opentelemetry", True),
)

_BY_NAME = {m.name: m for m in KNOWN_METRICS}
_PRIORITY = {m.name: i for i, m in enumerate(KNOWN_METRICS)}

# Series whose names look like a concept but measure something else.
_NOT_ACCELERATOR_CONCEPT = frozenset(
    {
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "DCGM_FI_DEV_ENC_UTIL",
        "DCGM_FI_DEV_DEC_UTIL",
        "gpu_umc_activity",
        "memory_bandwidth_utilization",
    }
)


def priority(name: str) -> int:
    """Which of several series of one concept to show (lower first)."""
    return _PRIORITY.get(name, len(_PRIORITY))


# What the OpenTelemetry hardware conventions call each concept (name, Prometheus name).
OTEL_NAMES = {
    Concept.UTILIZATION: ("hw.gpu.utilization", "hw_gpu_utilization_ratio"),
    Concept.MEMORY_USED: ("hw.gpu.memory.usage", "hw_gpu_memory_usage_bytes"),
    Concept.TEMPERATURE: ("hw.temperature", "hw_temperature_celsius"),
    Concept.POWER: ("hw.power", "hw_power_watts"),
    Concept.INTERCONNECT: ("hw.gpu.io", "hw_gpu_io_bytes_total"),
}

# Name patterns for exporters we do not know by name (as upstream does: util/utilization,
# mem/memory/fb/vram/hbm); a series must still carry a device label to count.
_FALLBACK = (
    (Concept.UTILIZATION, re.compile(r"(util|utilization|activity|busy)", re.I)),
    (
        Concept.MEMORY_USED,
        re.compile(
            r"(mem|memory|fb|vram|hbm).*(used|usage)|"
            r"(used|usage).*(mem|memory|fb|vram|hbm)",
            re.I,
        ),
    ),
    (Concept.TEMPERATURE, re.compile(r"temp", re.I)),
    (Concept.POWER, re.compile(r"power", re.I)),
    (Concept.INTERCONNECT, re.compile(r"(nvlink|xgmi|pcie|interconnect|fabric|_io_)", re.I)),
)


def _fallback_factor(name: str, concept: Concept) -> float:
    """Unit factor guessed from the name's unit suffix (OpenMetrics habit)."""
    low = name.lower()
    if concept is Concept.UTILIZATION:
        return _PCT if ("percent" in low or "pct" in low or low.endswith("_util")) else 1.0
    if concept is Concept.MEMORY_USED:
        if "mib" in low or low.endswith("_mb"):
            return MIB if "mib" in low else 1e6
        return 1.0
    if concept is Concept.POWER and (low.endswith("_mw") or "milliwatt" in low):
        return 1e-3
    return 1.0


def classify(
    name: str, *, utilization: str | None = None, memory: str | None = None
) -> MetricName | None:
    """What series ``name`` measures, if it is an accelerator metric we recognise.

    ``utilization``/``memory`` are exact names given by the user (they win)."""
    if utilization and name == utilization:
        return MetricName(
            name, Concept.UTILIZATION, _fallback_factor(name, Concept.UTILIZATION), "given"
        )
    if memory and name == memory:
        return MetricName(
            name, Concept.MEMORY_USED, _fallback_factor(name, Concept.MEMORY_USED), "given"
        )
    known = _BY_NAME.get(name)
    if known is not None:
        return known
    if name in _NOT_ACCELERATOR_CONCEPT:
        return None
    if name.endswith(("_created", "_bucket", "_count", "_sum", "_info")):
        return None
    for concept, pattern in _FALLBACK:
        if pattern.search(name):
            if concept is Concept.MEMORY_USED and re.search(r"(total|free|limit|size)", name, re.I):
                return None
            return MetricName(
                name, concept, _fallback_factor(name, concept), "unknown", name.startswith("hw_")
            )
    return None


# Labels that identify one accelerator (upstream's list plus other vendors' and OTel's).
UUID_LABELS = ("UUID", "uuid", "gpu_uuid", "GPU_UUID", "device_uuid", "hw_id")
INDEX_LABELS = (
    "gpu",
    "gpu_id",
    "minor_number",
    "device_id",
    "dev_id",
    "card_id",
    "accelerator_id",
    "neuron_device_index",
    "neuroncore",
    "index",
)
OTHER_DEVICE_LABELS = ("pci_bus_id", "pci_bdf", "device", "GPU_I_ID", "serial_number")
DEVICE_LABELS = UUID_LABELS + INDEX_LABELS + OTHER_DEVICE_LABELS
HOST_LABELS = ("Hostname", "hostname", "node", "kubernetes_node", "node_name", "host")

_DEVICE_INDEX = re.compile(r"^(?:nvidia|card|accel|neuron|renderD)?(\d+)$")


@dataclass(frozen=True)
class DeviceId:
    """What a series says about the device it is about."""

    uuid: str | None
    index: int | None
    other: str | None

    @property
    def key(self) -> str:
        if self.uuid:
            return self.uuid.lower()
        if self.index is not None:
            return f"#{self.index}"
        return self.other or ""

    def __str__(self) -> str:
        parts = []
        if self.index is not None:
            parts.append(f"index {self.index}")
        if self.uuid:
            parts.append(self.uuid)
        if not parts and self.other:
            parts.append(self.other)
        return " ".join(parts)


def device_of(labels: dict[str, str]) -> DeviceId | None:
    """The device a series is about, or None when it has no device label."""
    uuid = next((labels[k] for k in UUID_LABELS if labels.get(k)), None)
    index: int | None = None
    for k in (*INDEX_LABELS, "device"):
        v = labels.get(k)
        if v is None or v == "":
            continue
        m = _DEVICE_INDEX.match(v)
        if m:
            index = int(m.group(1))
            break
    other = next((f"{k}={labels[k]}" for k in OTHER_DEVICE_LABELS if labels.get(k)), None)
    if uuid is None and index is None and other is None:
        return None
    return DeviceId(uuid, index, other)


def host_of(labels: dict[str, str]) -> str | None:
    return next((labels[k] for k in HOST_LABELS if labels.get(k)), None)
