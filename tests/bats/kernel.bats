#!/usr/bin/env bats
# Guest kernels: the config check, and a real boot of each built variant
# under QEMU's microvm machine (TCG: this host's KVM hangs stock kernels).
load helpers

KDIR=${BOXKIT_KERNEL_OUT:-$TOP/build/kernels}

# tiny_initrd OUT: busybox-static and an /init that reports and reboots
tiny_initrd() {
	local d=$BATS_TEST_TMPDIR/initrd
	mkdir -p "$d/bin" "$d/proc" "$d/sys" "$d/dev"
	cp /bin/busybox "$d/bin/busybox"
	ln -s busybox "$d/bin/sh"
	cat >"$d/init" <<'EOI'
#!/bin/sh
/bin/busybox mount -t proc proc /proc
echo "BOXKIT-INIT-OK pid=$$ kernel=$(/bin/busybox uname -r)"
if [ -e /proc/net/ip_tables_names ]; then echo "iptables: present"; else echo "iptables: absent"; fi
/bin/busybox grep -q nsdelegate /proc/filesystems 2>/dev/null
/bin/busybox grep -E '^nodev\s+(cgroup2|overlay|virtiofs|fuse|tmpfs|devtmpfs|bpf)$' /proc/filesystems | /bin/busybox tr -s '\t\n' '  '
echo
/bin/busybox reboot -f
EOI
	chmod +x "$d/init"
	(cd "$d" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$1"
}

boot() { # VARIANT -> $output
	local k=$KDIR/$1/bzImage
	[ -f "$k" ] || skip "kernel '$1' not built: run 'make kernel-$1'"
	tiny_initrd "$BATS_TEST_TMPDIR/initrd.gz"
	run -0 timeout 60 qemu-system-x86_64 -M microvm,acpi=off -accel tcg -m 256 -nodefaults \
		-no-user-config -nographic -serial stdio -kernel "$k" -initrd "$BATS_TEST_TMPDIR/initrd.gz" \
		-append "console=ttyS0 quiet panic=-1 reboot=t" -no-reboot
}

@test "make kernel-check: every asked symbol of lean and net is set" {
	run -0 make -s -C "$TOP" kernel-check
	assert_contains "$output" "lean: all"
	assert_contains "$output" "net: all"
}

@test "kbuild check fails naming a symbol Kconfig dropped" {
	c=$BATS_TEST_TMPDIR/configs
	cp -r "$TOP/kernel-configs" "$c"
	echo CONFIG_MODULE_SIG=y >>"$c/lean.config" # needs MODULES, which lean turns off
	BOXKIT_KERNEL_CONFIGS=$c run -1 --separate-stderr "$TOP/tools/kernel/kbuild" check lean
	assert_contains "$stderr" "kbuild: error: lean: CONFIG_MODULE_SIG asked y, Kconfig gave n"
}

@test "kbuild refuses an unknown variant" {
	run -2 --separate-stderr "$TOP/tools/kernel/kbuild" build huge
	assert_contains "$stderr" "unknown kernel variant 'huge'"
}

@test "lean kernel boots to init under QEMU microvm, without netfilter" {
	boot lean
	assert_contains "$output" "BOXKIT-INIT-OK pid=1"
	assert_contains "$output" "iptables: absent"
	for fs in cgroup2 overlay virtiofs tmpfs; do assert_contains "$output" "$fs"; done
}

@test "net kernel boots to init under QEMU microvm, with iptables" {
	boot net
	assert_contains "$output" "BOXKIT-INIT-OK pid=1"
	assert_contains "$output" "iptables: present"
}

@test "a second kernel build with nothing changed does nothing" {
	[ -f "$KDIR/lean/key" ] || skip "kernel 'lean' not built: run 'make kernel-lean'"
	before=$(stat -c '%i %Y' "$KDIR/lean/bzImage")
	run -0 --separate-stderr "$TOP/tools/kernel/kbuild" build lean
	assert_contains "$stderr" "lean: up to date"
	assert_eq "$(stat -c '%i %Y' "$KDIR/lean/bzImage")" "$before"
}
