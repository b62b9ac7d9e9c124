"""The resource filter shared by the scheduler and the claim (no database)."""

from __future__ import annotations

from control.compute import claims, models


def node(
    vcpus: int = 4, memory_mb: int = 4096, local_gb: int = 40, **used: int
) -> models.ComputeNode:
    return models.ComputeNode(
        host="h",
        vcpus=vcpus,
        memory_mb=memory_mb,
        local_gb=local_gb,
        vcpus_used=used.get("vcpus", 0),
        memory_mb_used=used.get("ram", 0),
        local_gb_used=used.get("disk", 0),
    )


def request(vcpus: int = 1, memory_mb: int = 512, disk_gb: int = 1) -> claims.Request:
    return claims.Request("i", vcpus, memory_mb, disk_gb)


def test_fits_names_the_first_missing_resource() -> None:
    exact = claims.Ratios(1.0, 1.0, 1.0)
    assert claims.fits(node(), request(), exact) is None
    assert claims.fits(node(ram=4000), request(memory_mb=512), exact) == "ram"
    assert claims.fits(node(disk=40), request(disk_gb=1), exact) == "disk"
    assert claims.fits(node(), request(vcpus=5), exact) == "vcpus"


def test_allocation_ratios_allow_overcommit() -> None:
    ratios = claims.Ratios(cpu=16.0, ram=1.5, disk=1.0)
    assert claims.fits(node(vcpus=4), request(vcpus=64), ratios) is None
    assert claims.fits(node(vcpus=4), request(vcpus=65), ratios) == "vcpus"
    assert claims.fits(node(memory_mb=4096), request(memory_mb=6144), ratios) is None
    assert claims.fits(node(memory_mb=4096), request(memory_mb=6145), ratios) == "ram"
