//! Raw camera / framebuffer pixels to RGB and to JPEG: a driver (or an emulated one) may hand over short,
//! odd-sized or odd-strided frames. The first 9 bytes choose the format, size and stride.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pincer_hal::image::PixelFormat;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let offsets = data[8];
    let formats = [
        PixelFormat::Yuyv,
        PixelFormat::Uyvy,
        PixelFormat::Nv12,
        PixelFormat::Yu12,
        PixelFormat::Rgb24,
        PixelFormat::Bgr24,
        PixelFormat::Grey,
        PixelFormat::Rgb565,
        // framebuffers describe the offsets; a hostile driver could say anything
        PixelFormat::Rgb32 {
            r: offsets,
            g: offsets.wrapping_mul(7),
            b: offsets / 3,
        },
    ];
    let format = formats[usize::from(data[0]) % formats.len()];
    let width = u32::from(u16::from_le_bytes([data[1], data[2]]));
    let height = u32::from(u16::from_le_bytes([data[3], data[4]]));
    let stride = u32::from(u16::from_le_bytes([data[5], data[6]]));
    if let Ok(rgb) = format.to_rgb(&data[9..], width, height, stride) {
        let _ = rgb.fit_width(u32::from(data[7]).max(1));
    }
    // A photo straight from the frame, as camera.snap codes YUV (small sizes: speed).
    let _ = format.to_jpeg_within(
        &data[9..],
        width % 97,
        height % 97,
        stride,
        u32::from(data[7]),
        data[8] % 101,
        1 << 20,
    );
});
