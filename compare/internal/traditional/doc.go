// Package traditional builds and boots the other contender of `make
// compare`: a Debian bookworm server the way one is usually made — a
// debootstrap minbase root with the server package installed by apt and
// nothing removed — booted from an ext4 root disk by a stage-1 initramfs,
// with a plain shell script as PID 1 that brings the network up and
// starts the server as its own user.
//
// What it builds:
//   - the root filesystem, once, in a cache directory (debootstrap
//     --variant=minbase, then redis-server, iproute2 and kmod installed
//     in a chroot with a policy-rc.d that keeps services from starting;
//     apt's caches and lists are dropped afterwards, as image builds do);
//   - per run, an ext4 image of that root plus the comparison's own test
//     programs under /opt/compare (which the surface scan leaves out);
//   - a stage-1 initramfs like initramfs-tools': the kernel bundle's own
//     modules and a shell script that loads them with insmod, mounts the
//     root disk and switch_roots to it. Its shell and tools are copied
//     from the root with their shared libraries (package elfdeps).
//
// The VM is the same QEMU machine hull uses (package qemu builds both
// command lines) booting the same kernel bundle with its boot hints,
// with the root disk attached writable on a throwaway snapshot
// (snapshot=on) so every boot starts from the same disk. Its NIC joins a
// gateway of hull's (package netgw) started with no egress rules and one
// forward on 127.0.0.1, as hull run's own.
//
// What it deliberately does not do: run systemd (the root has none, as
// minbase ships none), apply systemd's per-service sandboxing, add
// kernel modules to the bundle (the kernel must have ext4 built in), or
// listen anywhere but 127.0.0.1 on the host. Building the root needs
// root privileges (chroot, mount); booting does not.
package traditional
