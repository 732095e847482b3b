#!/bin/sh
# busybox udhcpc event script of the canary guest (guest/init runs udhcpc with -s /etc/udhcpc.sh;
# busybox ships no default script). Configures the leased address and default route on $interface
# and reports it on the console, which hosts read: "haven-guest: net <ip>" whenever the address is
# set, "haven-guest: no address" once if the first attempts get no lease (udhcpc keeps trying).
# udhcpc's own output goes to /dev/null, so messages are written to /dev/console directly.
state=/tmp/udhcpc.$interface

case $1 in
deconfig)
	ip -4 addr flush dev "$interface"
	rm -f "$state"
	;;
bound | renew)
	# A renewal of the same lease changes nothing; re-adding the address would fail.
	current=
	[ -r "$state" ] && read -r current <"$state"
	[ "$current" = "$ip/$mask $router" ] && exit 0
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface" || exit 1
	for gw in $router; do
		ip route add default via "$gw" dev "$interface" && break
	done
	echo "$ip/$mask $router" >"$state"
	echo "haven-guest: net $ip" >/dev/console
	;;
leasefail)
	if [ ! -e "$state" ] && [ ! -e "$state.failed" ]; then
		: >"$state.failed"
		echo "haven-guest: no address" >/dev/console
	fi
	;;
esac
exit 0
