/*
 * verbatim: Vulkan-Hpp shim for building whisper.cpp 1.8.3's Vulkan backend against older
 * system headers (Debian 12 ships 1.3.239). See vulkan_core.h beside this file for how it is
 * found.
 *
 * ggml_vk_instance_init() chains a vk::LayerSettingsCreateInfoEXT into the instance create
 * info (to ask the validation layer, when present, for best-practice checks). Those types came
 * with VK_EXT_layer_settings in headers 1.3.261. On older headers this file adds minimal
 * stand-ins with the C structures' layout, so the chained structure is byte for byte what newer
 * headers would pass; a driver without the extension ignores it, as it does there. With
 * headers that have VK_EXT_layer_settings it adds nothing.
 */
#include_next <vulkan/vulkan.hpp>

#if !defined(VK_EXT_layer_settings) && !defined(VERBATIM_VK_LAYER_SETTINGS_SHIM)
#define VERBATIM_VK_LAYER_SETTINGS_SHIM 1
#include <cstdint>
#include <vector>

namespace vk {
// VkLayerSettingTypeEXT
enum class LayerSettingTypeEXT : int32_t {
    eBool32 = 0,
    eInt32 = 1,
    eInt64 = 2,
    eUint32 = 3,
    eUint64 = 4,
    eFloat32 = 5,
    eFloat64 = 6,
    eString = 7,
};

// VkLayerSettingEXT
struct LayerSettingEXT {
    const char *pLayerName;
    const char *pSettingName;
    LayerSettingTypeEXT type;
    uint32_t valueCount;
    const void *pValues;
};

// VkLayerSettingsCreateInfoEXT
struct LayerSettingsCreateInfoEXT {
    VkStructureType sType = static_cast<VkStructureType>(1000496000); // ..._LAYER_SETTINGS_CREATE_INFO_EXT
    const void *pNext = nullptr;
    uint32_t settingCount = 0;
    const LayerSettingEXT *pSettings = nullptr;

    explicit LayerSettingsCreateInfoEXT(const std::vector<LayerSettingEXT> &settings)
        : settingCount(static_cast<uint32_t>(settings.size())), pSettings(settings.data()) {}
};
} // namespace vk
#endif
