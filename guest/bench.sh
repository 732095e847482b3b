#!/bin/sh
# Haven storage benchmark inside the guest (kernel parameter haven.bench=MB): sequential write, then
# sequential read, of MB MiB on /dev/vda with O_DIRECT, 1 MiB blocks. Prints one line per phase:
#   haven-bench: write <bytes> <seconds>
#   haven-bench: read <bytes> <seconds>
#   haven-bench: done
# bench/storage.ts reads these lines from the serial log.
DEV=${2:-/dev/vda}
MB=${1:-256}

now() {
	read -r up _ </proc/uptime
	echo "$up"
}

phase() {
	name=$1
	shift
	start=$(now)
	if ! dd "$@" bs=1M count="$MB" 2>/dev/null; then
		echo "haven-bench: $name failed"
		return 1
	fi
	end=$(now)
	echo "haven-bench: $name $((MB * 1048576)) $(awk "BEGIN { print $end - $start }")"
}

phase write if=/dev/zero of="$DEV" oflag=direct conv=fsync &&
	phase read if="$DEV" of=/dev/null iflag=direct
echo "haven-bench: done"
