//! The legacy 8259 interrupt controllers: moved out of the way and silenced.
//!
//! At power-on the two 8259 PICs deliver IRQ 0–7 on vectors 8–15 — the same vectors as CPU
//! exceptions (IRQ 0, the PIT timer, would arrive as a "double fault"). User code runs with
//! interrupts enabled, so before the first return to ring 3 the PICs are reprogrammed to
//! vectors 32–47 and every line is masked; the scheduler's tick (`timer`) unmasks IRQ 0 alone.

use x86_64::instructions::port::Port;

/// Remaps IRQ 0–15 to vectors 32–47 and masks them all.
pub fn remap_and_mask() {
    let mut master_cmd = Port::<u8>::new(0x20);
    let mut master_data = Port::<u8>::new(0x21);
    let mut slave_cmd = Port::<u8>::new(0xa0);
    let mut slave_data = Port::<u8>::new(0xa1);
    // SAFETY: the standard ICW1–ICW4 initialization sequence of the PC's two 8259s; it only
    // changes which vectors the PICs use and masks every line.
    unsafe {
        master_cmd.write(0x11); // ICW1: initialize, expect ICW4
        slave_cmd.write(0x11);
        master_data.write(32); // ICW2: vector base
        slave_data.write(40);
        master_data.write(4); // ICW3: slave on IRQ 2
        slave_data.write(2);
        master_data.write(0x01); // ICW4: 8086 mode
        slave_data.write(0x01);
        master_data.write(0xff); // mask everything
        slave_data.write(0xff);
    }
}
