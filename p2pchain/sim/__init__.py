"""A deterministic simulator for the PBFT core: seeded virtual clock and network, fault
injection (losses, partitions, crashes, amnesia, twins, Byzantine replicas), and a checker
for safety, validity and liveness. See docs/consensus.md."""
