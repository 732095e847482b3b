#!/bin/sh
# Haven canary: the data-integrity oracle (busybox sh; started by guest/init on /dev/vda).
# Usage: canary.sh [DEVICE]    (default /dev/vda; a regular file works too, for testing)
#
# Disk layout, 512-byte slots:
#   slot 0   "HAVEN-CANARY v1\n", zero padded (written on first boot when slot 0 is empty)
#   slot N   "HVN1 <seq> <unixtime> <bootid> <prevcrc> <crc>\n", zero padded, seq == N >= 1
# crc is the POSIX cksum CRC (decimal) of "HVN1 <seq> <unixtime> <bootid> <prevcrc>",
# prevcrc the crc of record seq-1 (0 for seq 1), bootid 8 random hex chars per boot.
# Each record is written by one dd (O_DIRECT, 512 bytes, then fsync) and "ack <seq>" is printed
# on stdout (the serial console) only after that dd succeeded. A failed write prints
# "canary: write failed seq <N>" and is retried every second, never acked.
# On start it resumes after the highest valid record ("canary: resume after <seq>").
# Kernel parameter haven.canary.interval_ms=N (default 100) sets the pause between records.
# With CANARY_ACK_FILE=PATH (guest/init sets it when the VM has a NIC) each "ack <seq>" line is also
# written to PATH, which the guest serves on TCP port 80.
# src/core/canary.ts is the verifier for this format.

set -u
DEV=${1:-/dev/vda}
WORK=${CANARY_WORK:-/tmp/canary}
ACK_FILE=${CANARY_ACK_FILE:-}
HEADER="HAVEN-CANARY v1"

idle() {
	while :; do sleep 3600; done
}

# --- POSIX cksum CRC (polynomial 0x04C11DB7, MSB first) in shell arithmetic: no forks ---------
# (Debian's busybox has no cksum applet; crc32 is a different CRC.) Table: T<i> = CRC of byte i.
T0=0 T1=79764919 T2=159529838 T3=222504665 T4=319059676 T5=398814059 T6=445009330 T7=507990021
T8=638119352 T9=583659535 T10=797628118 T11=726387553 T12=890018660 T13=835552979 T14=1015980042 T15=944750013
T16=1276238704 T17=1221641927 T18=1167319070 T19=1095957929 T20=1595256236 T21=1540665371 T22=1452775106 T23=1381403509
T24=1780037320 T25=1859660671 T26=1671105958 T27=1733955601 T28=2031960084 T29=2111593891 T30=1889500026 T31=1952343757
T32=2552477408 T33=2632100695 T34=2443283854 T35=2506133561 T36=2334638140 T37=2414271883 T38=2191915858 T39=2254759653
T40=3190512472 T41=3135915759 T42=3081330742 T43=3009969537 T44=2905550212 T45=2850959411 T46=2762807018 T47=2691435357
T48=3560074640 T49=3505614887 T50=3719321342 T51=3648080713 T52=3342211916 T53=3287746299 T54=3467911202 T55=3396681109
T56=4063920168 T57=4143685023 T58=4223187782 T59=4286162673 T60=3779000052 T61=3858754371 T62=3904687514 T63=3967668269
T64=881225847 T65=809987520 T66=1023691545 T67=969234094 T68=662832811 T69=591600412 T70=771767749 T71=717299826
T72=311336399 T73=374308984 T74=453813921 T75=533576470 T76=25881363 T77=88864420 T78=134795389 T79=214552010
T80=2023205639 T81=2086057648 T82=1897238633 T83=1976864222 T84=1804852699 T85=1867694188 T86=1645340341 T87=1724971778
T88=1587496639 T89=1516133128 T90=1461550545 T91=1406951526 T92=1302016099 T93=1230646740 T94=1142491917 T95=1087903418
T96=2896545431 T97=2825181984 T98=2770861561 T99=2716262478 T100=3215044683 T101=3143675388 T102=3055782693 T103=3001194130
T104=2326604591 T105=2389456536 T106=2200899649 T107=2280525302 T108=2578013683 T109=2640855108 T110=2418763421 T111=2498394922
T112=3769900519 T113=3832873040 T114=3912640137 T115=3992402750 T116=4088425275 T117=4151408268 T118=4197601365 T119=4277358050
T120=3334271071 T121=3263032808 T122=3476998961 T123=3422541446 T124=3585640067 T125=3514407732 T126=3694837229 T127=3640369242
T128=1762451694 T129=1842216281 T130=1619975040 T131=1682949687 T132=2047383090 T133=2127137669 T134=1938468188 T135=2001449195
T136=1325665622 T137=1271206113 T138=1183200824 T139=1111960463 T140=1543535498 T141=1489069629 T142=1434599652 T143=1363369299
T144=622672798 T145=568075817 T146=748617968 T147=677256519 T148=907627842 T149=853037301 T150=1067152940 T151=995781531
T152=51762726 T153=131386257 T154=177728840 T155=240578815 T156=269590778 T157=349224269 T158=429104020 T159=491947555
T160=4046411278 T161=4126034873 T162=4172115296 T163=4234965207 T164=3794477266 T165=3874110821 T166=3953728444 T167=4016571915
T168=3609705398 T169=3555108353 T170=3735388376 T171=3664026991 T172=3290680682 T173=3236090077 T174=3449943556 T175=3378572211
T176=3174993278 T177=3120533705 T178=3032266256 T179=2961025959 T180=2923101090 T181=2868635157 T182=2813903052 T183=2742672763
T184=2604032198 T185=2683796849 T186=2461293480 T187=2524268063 T188=2284983834 T189=2364738477 T190=2175806836 T191=2238787779
T192=1569362073 T193=1498123566 T194=1409854455 T195=1355396672 T196=1317987909 T197=1246755826 T198=1192025387 T199=1137557660
T200=2072149281 T201=2135122070 T202=1912620623 T203=1992383480 T204=1753615357 T205=1816598090 T206=1627664531 T207=1707420964
T208=295390185 T209=358241886 T210=404320391 T211=483945776 T212=43990325 T213=106832002 T214=186451547 T215=266083308
T216=932423249 T217=861060070 T218=1041341759 T219=986742920 T220=613929101 T221=542559546 T222=756411363 T223=701822548
T224=3316196985 T225=3244833742 T226=3425377559 T227=3370778784 T228=3601682597 T229=3530312978 T230=3744426955 T231=3689838204
T232=3819031489 T233=3881883254 T234=3928223919 T235=4007849240 T236=4037393693 T237=4100235434 T238=4180117107 T239=4259748804
T240=2310601993 T241=2373574846 T242=2151335527 T243=2231098320 T244=2596047829 T245=2659030626 T246=2470359227 T247=2550115596
T248=2947551409 T249=2876312838 T250=2788305887 T251=2733848168 T252=3165939309 T253=3094707162 T254=3040238851 T255=2985771188
# Byte values of the only characters a record can contain ("C_" + space is the space).
C_=32 C_0=48 C_1=49 C_2=50 C_3=51 C_4=52 C_5=53 C_6=54 C_7=55 C_8=56 C_9=57
C_a=97 C_b=98 C_c=99 C_d=100 C_e=101 C_f=102 C_H=72 C_N=78 C_V=86

# crc_bytes REG STR: feed STR (characters above only) into CRC register REG; result in R.
crc_bytes() {
	R=$1 _s=$2 _i=0 _n=${#2}
	while [ $_i -lt $_n ]; do
		R=$(( ((R << 8) & 4294967295) ^ T$(( ((R >> 24) ^ C_${_s:$_i:1}) & 255 )) ))
		_i=$((_i + 1))
	done
}

# crc_finish LEN: append the message length (LSB first) to R and complement: result in CK.
crc_finish() {
	_l=$1
	while [ $_l -gt 0 ]; do
		R=$(( ((R << 8) & 4294967295) ^ T$(( ((R >> 24) ^ _l) & 255 )) ))
		_l=$((_l >> 8))
	done
	CK=$(( ~R & 4294967295 ))
}

crc_bytes 0 "HVN1 "
PREFIX=$R # register after the constant "HVN1 " prefix of every record

# record_crc "SEQ TIME BOOTID PREVCRC": CK = crc of "HVN1 SEQ TIME BOOTID PREVCRC".
record_crc() {
	crc_bytes $PREFIX "$1"
	crc_finish $((5 + ${#1}))
}

record_crc "1 0 deadbeef 0"
if [ "$CK" != 1827199253 ]; then
	echo "canary: crc self-test failed ($CK)"
	exit 1
fi

# --- settings ---------------------------------------------------------------------------------
interval_ms=100
cmdline=
[ -r /proc/cmdline ] && read -r cmdline </proc/cmdline
for word in $cmdline; do
	case $word in
	haven.canary.interval_ms=*)
		v=${word#*=}
		while [ "${#v}" -gt 1 ] && [ "${v#0}" != "$v" ]; do v=${v#0}; done
		case $v in '' | *[!0-9]*) echo "canary: ignoring $word" ;; *) interval_ms=$v ;; esac
		;;
	esac
done

if [ -b "$DEV" ]; then
	KIND=-b
	name=${DEV##*/}
	read -r slots </sys/class/block/"$name"/size # always in 512-byte sectors
elif [ -f "$DEV" ]; then
	KIND=-f
	slots=$(($(stat -c %s "$DEV") / 512))
else
	echo "canary: $DEV is not a block device"
	exit 1
fi

mkdir -p "$WORK"
# Sleeping without forking: read with a timeout from a FIFO nobody writes to.
rm -f "$WORK/tick"
if mkfifo "$WORK/tick" && exec 5<>"$WORK/tick"; then
	# nap MS
	nap() {
		_f=$(($1 % 1000))
		while [ ${#_f} -lt 3 ]; do _f=0$_f; done
		read -r -t "$(($1 / 1000)).$_f" _ <&5
	}
else
	nap() { usleep $(($1 * 1000)); }
fi

# put SLOT TEXT: write TEXT + "\n", zero padded to 512 bytes, at SLOT with one O_DIRECT dd and
# fsync. Succeeds only if dd did and the data went to $DEV (a vanished device node would make dd
# create a regular file in its place).
# Why not "bs=512 conv=sync" from a here-document: busybox dd allocates buffers smaller than a page
# with malloc, O_DIRECT then fails with EINVAL and dd silently falls back to buffered I/O, which
# rewrites the whole 4 KiB block around the slot from the guest's page cache. With bs=4096 the
# buffer is mmap'ed (page aligned); count_bytes/seek_bytes keep the write at exactly 512 bytes.
PAD='\0' # printf escapes for the zero padding: 512 of them
while [ ${#PAD} -lt 1024 ]; do PAD=$PAD$PAD; done
put() {
	[ $KIND "$DEV" ] || return 1
	printf "%s\n${PAD:0:$((2 * (511 - ${#2})))}" "$2" >"$WORK/record" || return 1
	dd if="$WORK/record" of="$DEV" bs=4096 count=512 seek=$(($1 * 512)) iflag=count_bytes,fullblock \
		oflag=seek_bytes,direct conv=notrunc,fsync 2>/dev/null || return 1
	[ $KIND "$DEV" ] && return 0
	[ $KIND = -b ] && [ -f "$DEV" ] && rm -f "$DEV"
	return 1
}

# read_slot SLOT: SLOT_LINE = first line of the slot (NUL runs turned into newlines).
read_slot() {
	dd if="$DEV" bs=512 skip="$1" count=1 2>/dev/null | tr -s '\0' '\n' >"$WORK/slot"
	SLOT_LINE=
	IFS= read -r SLOT_LINE <"$WORK/slot"
}

# --- resume: find the highest valid record ----------------------------------------------------
read_slot 0
slot0=$SLOT_LINE
[ -n "$slot0" ] || { IFS= read -r _ && IFS= read -r slot0; } <"$WORK/slot"
if [ -n "$slot0" ] && [ "$slot0" != "$HEADER" ]; then
	echo "canary: slot 0 of $DEV is not a canary header; refusing to write"
	idle
fi

# Records are contiguous from slot 1, so the used region ends in the last non-empty 64 KiB chunk:
# find it by galloping and bisection (a few dozen reads even on a full disk, where a linear scan of
# a long-running canary's disk would take many seconds under TCG), then look for the highest valid
# record there, going down chunk by chunk if that one holds none.
CHUNK=65536
chunks=$(((slots * 512 + CHUNK - 1) / CHUNK))
# probe C: chunk C's text in $WORK/chunk (each run of NULs turned into one newline, so every
# slot's text is a line of its own); true if the chunk is not all zero.
probe() {
	dd if="$DEV" bs=$CHUNK skip="$1" count=1 2>/dev/null | tr -s '\0' '\n' >"$WORK/chunk"
	_a= _b=
	{ IFS= read -r _a; IFS= read -r _b; } <"$WORK/chunk"
	[ -n "$_a$_b" ]
}
end=-1 # last non-empty chunk
if probe 0; then
	lo=0 step=1
	while [ $((lo + step)) -lt $chunks ] && probe $((lo + step)); do
		lo=$((lo + step)) step=$((step * 2))
	done
	hi=$((lo + step))
	[ $hi -le $chunks ] || hi=$chunks
	while [ $((hi - lo)) -gt 1 ]; do
		mid=$(((lo + hi) / 2))
		if probe $mid; then lo=$mid; else hi=$mid; fi
	done
	end=$lo
fi

# Well-formed record lines of a chunk, highest seq first; check crc and slot position going down.
last=0 lastcrc=0
c=$end
while [ $c -ge 0 ] && [ $last = 0 ]; do
	probe $c
	awk -v slots="$slots" '/^HVN1 [1-9][0-9]* (0|[1-9][0-9]*) [0-9a-f]{8} (0|[1-9][0-9]*) (0|[1-9][0-9]*)$/ &&
		length($2) <= 12 && $2 + 0 < slots' "$WORK/chunk" | sort -t ' ' -k 2,2nr >"$WORK/candidates"
	while read -r _ s t b p crc; do
		record_crc "$s $t $b $p"
		[ "$CK" = "$crc" ] || continue
		read_slot "$s"
		[ "$SLOT_LINE" = "HVN1 $s $t $b $p $crc" ] || continue
		last=$s lastcrc=$crc
		break
	done <"$WORK/candidates"
	c=$((c - 1))
done

if [ -z "$slot0" ]; then
	until put 0 "$HEADER"; do
		echo "canary: header write failed"
		nap 1000
	done
fi
echo "canary: resume after $last"

# --- write loop: one dd per record, no other forks --------------------------------------------
read -r u </proc/sys/kernel/random/uuid
bootid=${u%%-*}
read -r up _ </proc/uptime
base=$(($(date +%s) - ${up%.*})) # unix time = base + uptime seconds
seq=$((last + 1)) prev=$lastcrc
while :; do
	if [ $seq -ge "$slots" ]; then
		echo "canary: disk full at seq $seq"
		idle
	fi
	read -r up _ </proc/uptime
	rest="$seq $((base + ${up%.*})) $bootid $prev"
	record_crc "$rest"
	until put $seq "HVN1 $rest $CK"; do
		echo "canary: write failed seq $seq"
		nap 1000
	done
	echo "ack $seq"
	# Overwritten in place, never truncated (1<> opens without O_TRUNC): the line only ever grows,
	# so a reader sees a whole "ack <seq>" line, never an empty file. A builtin and a redirect: no fork.
	[ -z "$ACK_FILE" ] || echo "ack $seq" 2>/dev/null 1<>"$ACK_FILE"
	prev=$CK seq=$((seq + 1))
	[ "$interval_ms" -eq 0 ] || nap "$interval_ms"
done
