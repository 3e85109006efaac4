package traditional

import "strings"

// The traditional VM's boot scripts. Console lines starting "compare:"
// are the markers the host waits for; everything else on the console is
// kernel or program output.

// Console markers the init script prints.
const (
	// GuestInfoEnd follows the guestinfo probe's line.
	GuestInfoEnd = "compare: guestinfo end"
	// The red-team runs, as the service user and as root, are printed
	// between these.
	RedTeamBeginRedis = "compare: redteam begin redis"
	RedTeamEndRedis   = "compare: redteam end redis"
	RedTeamBeginRoot  = "compare: redteam begin root"
	RedTeamEndRoot    = "compare: redteam end root"
)

// initScript is /sbin/init on the root disk: PID 1 after stage 1. It
// does what a minimal Debian server's boot does for one service — mount
// the kernel filesystems, bring up lo and eth0 with a static address
// (QEMU's user network: 10.0.2.15/24, gateway 10.0.2.2), start the
// service as its own user — and then stays to reap. The kernel command
// line's compare.app= picks the service:
//
//	redis      redis-server as user redis, with hull's image arguments
//	http       the Go HTTP server as www-data
//	guestinfo  the guestinfo probe as redis, then power off
//	redteam    the red-team program as redis, then as root, then power off
//
// The red-team program runs as root with -tmp / so its own chroot
// attempt (which root may make) does not lock the rest of its attempts
// into a directory.
const initScript = `#!/bin/sh
# PID 1 of hull's "make compare" traditional server VM: what a minimal
# Debian server does at boot for one service, without systemd.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
[ -e /proc/self/stat ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
grep -q ' /run ' /proc/mounts || mount -t tmpfs -o mode=755 tmpfs /run
hostname "$(cat /etc/hostname)"
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
app=
for arg in $(cat /proc/cmdline); do
	case $arg in compare.app=*) app=${arg#compare.app=} ;; esac
done
echo "compare: up app=$app"
case $app in
redis)
	cd /var/lib/redis
	setpriv --reuid=redis --regid=redis --init-groups \
		/usr/bin/redis-server --port 6379 --protected-mode no --save '' --appendonly no &
	;;
http)
	cd /
	setpriv --reuid=www-data --regid=www-data --init-groups /opt/compare/hello-server &
	;;
guestinfo)
	setpriv --reuid=redis --regid=redis --init-groups /opt/compare/guestinfo
	echo "compare: guestinfo end"
	echo o >/proc/sysrq-trigger
	;;
redteam)
	cd /tmp
	echo "compare: redteam begin redis"
	setpriv --reuid=redis --regid=redis --init-groups /opt/compare/redteam -tmp /tmp
	echo "compare: redteam end redis"
	cd /
	echo "compare: redteam begin root"
	/opt/compare/redteam -tmp /
	echo "compare: redteam end root"
	echo o >/proc/sysrq-trigger
	;;
*)
	echo "compare: unknown app '$app'"
	;;
esac
while :; do
	wait
	sleep 60
done
`

// stage1Script is /init of the stage-1 initramfs, doing what
// initramfs-tools does on a Debian server: load the drivers the root
// disk needs (the order file lists them dependencies first), mount the
// root= disk read-write and switch_root to its /sbin/init.
const stage1Script = `#!/bin/sh
# Stage 1 of hull's "make compare" traditional server VM (the job
# initramfs-tools does on Debian): load drivers, mount root, switch.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
while read -r mod; do
	insmod "/usr/lib/modules/$mod" || echo "stage1: insmod $mod failed"
done </usr/lib/modules/load-order
read -r cmdline </proc/cmdline
root=/dev/vda
for arg in $cmdline; do
	case $arg in root=*) root=${arg#root=} ;; esac
done
tries=0
until mount -t ext4 -o rw "$root" /root; do
	tries=$((tries + 1))
	if [ "$tries" -gt 100 ]; then
		echo "stage1: cannot mount $root"
		exit 1
	fi
	sleep 0.05
done
exec switch_root /root /sbin/init
`

// stage1Tools are the programs stage 1 runs, copied from the root with
// their libraries.
var stage1Tools = []string{"/bin/sh", "/usr/sbin/insmod", "/usr/bin/mount", "/usr/sbin/switch_root", "/usr/bin/sleep"}

// SplitRedTeam cuts a red-team boot's console into the run as the
// service user and the run as root; ok is false when the first run did
// not end. The root run is whatever it printed before its end marker,
// or before the console stopped (the VM went down).
func SplitRedTeam(console string) (asRedis, asRoot string, ok bool) {
	_, rest, found := strings.Cut(console, RedTeamBeginRedis)
	if !found {
		return "", "", false
	}
	asRedis, rest, found = strings.Cut(rest, RedTeamEndRedis)
	if !found {
		return "", "", false
	}
	if _, root, found := strings.Cut(rest, RedTeamBeginRoot); found {
		asRoot, _, _ = strings.Cut(root, RedTeamEndRoot)
	}
	return asRedis, asRoot, true
}
