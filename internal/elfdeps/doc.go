// Package elfdeps computes the set of files a dynamically linked Linux ELF
// program needs in order to start: the program itself, its program
// interpreter (PT_INTERP), every shared object reachable through DT_NEEDED,
// and every symlink met on the way to any of them.
//
// It works purely by parsing files with debug/elf and reading the file system
// (optionally a sysroot): nothing is ever executed, neither the program nor
// its loader. The search rules follow glibc's ld.so on x86-64 Debian:
// DT_RPATH of the loading chain (only when the loading object has no
// DT_RUNPATH), Resolver.LibraryPath (like LD_LIBRARY_PATH), the object's own
// DT_RUNPATH, the directories listed in /etc/ld.so.conf (standing in for
// ld.so.cache), then the built-in default directories; $ORIGIN, $LIB and
// $PLATFORM are expanded, and candidates of the wrong ELF class or machine are
// skipped, as ld.so skips them. Names already loaded (by DT_NEEDED name,
// load path or DT_SONAME) are reused, so libc's DT_NEEDED of
// ld-linux-x86-64.so.2 binds to the interpreter. When PT_INTERP names musl's
// loader (ld-musl-*), musl's rules apply instead: the loader answers for libc's
// reserved names (libc.so, libpthread.so.0, ...), and
// /etc/ld-musl-ARCH.path replaces ld.so.conf.
//
// Each Resolve call works on its own state, so a Resolver may be shared by
// goroutines; a Closure may not (AddLibrary changes it).
//
// What it deliberately does not do:
//   - run anything, or read ld.so.cache (its order is approximated by the
//     order of ld.so.conf);
//   - discover libraries a program dlopens at run time (NSS modules,
//     plugins): callers name those with [Resolver.AddLibrary];
//   - look into glibc-hwcaps subdirectories, whose choice depends on the CPU
//     the image will eventually run on.
//
// Invariants of a [Closure]:
//   - every File.Path is absolute, clean and physical: none of its parent
//     directories is a symlink inside Root, so an image that recreates each
//     entry at its Path (symlinks as symlinks) reproduces exactly the paths
//     the program and its loader will open;
//   - Files is sorted by Path and holds each Path once;
//   - symlink targets are interpreted inside Root: absolute targets are
//     re-rooted and ".." never climbs above Root.
package elfdeps
