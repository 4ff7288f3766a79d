#pragma once
/// @file plot.hpp
/// @brief A small SVG line chart (loss curves, memory and timing figures in the lessons).

#include <string>
#include <vector>

namespace sgpt {

/// One line of a chart: points (x[i], y[i]), drawn in `color` (any SVG colour).
struct PlotSeries {
  std::string label;               ///< name shown in the legend
  /// x coordinates of the points.
  std::vector<double> x, y;        ///< y coordinates of the points (same length as x)
  std::string color = "#1f77b4";   ///< stroke colour of the line and markers (any SVG colour)
  bool markers = false;  ///< draw a dot on every point (for sparse series such as validation loss)
};

/// Renders the series as a standalone SVG document with axes, ticks, labels and a legend.
std::string line_chart_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                           const std::vector<PlotSeries>& series, int width = 720, int height = 420);

}  // namespace sgpt
